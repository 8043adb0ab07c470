"""``bptt check``: the two kinds of target, and the conventions found by running them.

- ``LossTarget``: ``FILE.py:FUNCTION`` or ``FILE.py:CLASS.METHOD`` that computes the loss and
  the gradients of the whole cell (min-char-rnn's ``lossFun``, a class's ``train``, WildML's
  ``bptt``).  Its conventions are settled by its loss: the form whose loss is the cell's (summed,
  or averaged over the steps) wins; a function that returns no loss is settled by its gradients.
- ``LayerTarget``: ``FILE.py:FORWARD,BACKWARD``, the recurrent part of the cell (``layer``).  Its
  conventions are settled by its forward: the form whose states are the cell's wins.  The backward
  is then given the upstream gradient h_t - r_t of the readout loss.

Each ``answer(problem)`` returns the user's loss (None if it returns none) and gradients by the
cell's names, the initial states' as ``h0``, ``c0``, the inputs' as ``x``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from derive.ir.cell import Cell
from derive.tools.check import code as codes
from derive.tools.check.code import Code, Form
from derive.tools.check.load import CheckError
from derive.tools.check.problem import PROBE_STEPS, Grads, Problem, make_problem
from derive.tools.check.weights import Block, Layout, gate_orders
from derive.tools.check.yardstick import Yardstick
from derive.verify.report import max_rel_error

MATCH_RTOL = 1e-6  # a form is the code's when its loss (or states) match the cell's this closely


@dataclass
class Answer:
    loss: float | None
    grads: Grads
    states: np.ndarray | None = None  # a layer's forward, (T, B, n)


def layouts(cell: Cell, code: Code) -> Iterator[Layout]:
    blocks = list(code.blocks.values())
    sourced = any(len(b.grid[0]) > 1 for b in blocks)
    for transposed, order, reverse in itertools.product(
        (False, True), gate_orders(cell, blocks), (False, True) if sourced else (False,)
    ):
        yield Layout(order=order, sources_reversed=reverse, transposed=transposed)


class Target:
    """What both kinds share: the code, its form once found, and what was found, in words."""

    code: Code
    form: Form
    cell: Cell
    readout = ""  # the vector a layer returns at every step (none for a loss function)

    def found(self) -> list[str]:
        raise NotImplementedError

    def answer(self, problem: Problem) -> Answer:
        raise NotImplementedError

    def as_run(self, problem: Problem) -> Problem:
        """The problem as the code runs it: from zero where it starts from zero."""
        return problem.starting_at_zero() if self.form.zero_start else problem


class LossTarget(Target):
    def __init__(self, code: Code, cell: Cell, yardstick: Yardstick, seed: int) -> None:
        self.code, self.cell, self.yardstick = code, cell, yardstick
        self.mean = ""  # "", or what the loss is averaged over: MEANS
        self.form = self._settle(make_problem(cell, PROBE_STEPS, np.random.default_rng(seed), layer=False))

    def _forms(self) -> Iterator[Form]:
        given = any(a.role == "state" for a in self.code.args) or _reads_state(self.code, self.cell)
        for zero, (inputs, columns), layout in itertools.product(
            (False, True) if given else (True,),
            (("ints", True), ("ints", False), ("onehot", False), ("onehot", True)),
            layouts(self.cell, self.code),
        ):
            yield Form(inputs, columns, layout, zero_start=zero)

    def _settle(self, problem: Problem) -> Form:
        """The first form whose loss is the cell's up to a mean; failing that, whose gradients are
        closest; failing that, the first that runs."""
        errors: list[CheckError] = []
        best: tuple[float, Form] | None = None
        for form in self._forms():
            try:
                returned, obj = self._returned(problem, form)
            except CheckError as e:
                errors.append(e)
                continue
            right_loss, right = self.yardstick.answer(problem.starting_at_zero() if form.zero_start else problem)
            loss = codes.loss_of(returned)
            if loss is not None and (mean := _mean(loss, right_loss, problem)) is not None:
                self.mean = mean
                return form
            try:
                grads = self._grads(returned, obj, problem, form)
            except CheckError as e:
                errors.append(e)
                continue
            error = max((_error(grads[p], right[p]) for p in grads if p in right), default=np.inf)
            if loss is None and error <= MATCH_RTOL:
                return form
            if best is None or error < best[0]:
                best = (error, form)
        if best is not None:
            return best[1]
        raise none_ran(self.code.label, errors)

    def _returned(self, problem: Problem, form: Form) -> tuple[list[tuple[str, Any]], Any]:
        obj = self.code.instance(problem, form) if self.code.owner is not None else None
        return codes.flatten(self.code.call(problem, form, obj=obj)), obj

    def _grads(self, returned: list[tuple[str, Any]], obj: Any, problem: Problem, form: Form) -> Grads:
        grads, _ = codes.gradients(self.code, returned, problem, form, {})
        if obj is not None and not grads:
            grads = codes.left_on(obj, self.code, problem, form)
        return grads

    def _call(self, problem: Problem, form: Form) -> Answer:
        returned, obj = self._returned(problem, form)
        return Answer(codes.loss_of(returned), self._grads(returned, obj, problem, form))

    def answer(self, problem: Problem) -> Answer:
        """The user's loss and gradients, a mean's multiplied back into the sum the cell's J is."""
        got = self._call(problem, self.form)
        scale = MEANS[self.mean](problem)
        loss = None if got.loss is None else got.loss / scale
        return Answer(loss, {k: g / scale for k, g in got.grads.items()})

    def found(self) -> list[str]:
        form, words = self.form, []
        words.append("inputs as a list of indices" if form.inputs == "ints" else "inputs as (T, D) rows")
        if _takes_vectors(self.code):
            words.append("vectors as columns (n, 1)" if form.columns else "vectors as rows (n,)")
        words += weight_words(self.code, form.weights, self.cell.param_names)
        words.append(start_words(self.code, self.cell, form))
        if self.mean:
            words.append(f"loss averaged over {self.mean} (its gradients compared times that)")
        return words


def none_ran(label: str, errors: list[CheckError]) -> CheckError:
    """Bad usage when no form runs the code: the error met most often (the first of those), said
    after the forms tried, unless every form met it (then it is the code's, whatever the form)."""
    said = [str(e) for e in errors]
    most = errors[max(range(len(errors)), key=lambda i: (said.count(said[i]), -i))]
    if said.count(str(most)) == len(said):
        return most
    return CheckError(
        f"{label}: it runs under none of the {len(errors)} conventions tried (layouts, vectors as rows or "
        f"columns, weights (out, in) or (in, out), gate orders); most often: {most}"
    )


def _error(got: np.ndarray, want: np.ndarray) -> float:
    return max_rel_error(got, want) if got.shape == want.shape else np.inf


def _reads_state(code: Code, cell: Cell) -> bool:
    """Whether the code reads an initial state other than as an argument (a global hprev)."""
    return any(code.args and a.role == "state" for a in code.args)


MEANS = {  # what a loss may be averaged over, and the factor that makes a sum over t and the batch that mean
    "": lambda p: 1.0,
    "the T steps": lambda p: 1 / p.steps,
    "the batch": lambda p: 1 / p.batch,
    "N·T": lambda p: 1 / (p.steps * p.batch),
}


def _takes_vectors(code: Code) -> bool:
    """Whether the code is given a vector (an initial state, a bias) whose shape a form settles."""
    biases = any(len(code.cell.param(b.params[0]).shape) == 1 for b in code.blocks.values())
    return biases or bool(code.absent) or any(a.role == "state" for a in code.args)


def _mean(user: float, right: float, problem: Problem) -> str | None:
    """What the user's loss is the cell's summed loss averaged over ("" for the sum); None if neither."""
    for mean, factor in MEANS.items():
        want = factor(problem) * right
        if abs(user - want) <= MATCH_RTOL * abs(want) and (mean != "the batch" or problem.batch > 1):
            return mean
    return None


def weight_words(code: Code, layout: Layout, params: tuple[str, ...]) -> list[str]:
    """How the code stores its weights (those of ``params``): orientation, the gates' order, its names."""
    blocks, words = code.checked(params), []
    if any(len(code.cell.param(b.params[0]).shape) == 2 for b in blocks.values()):
        words.append(f"weights stored {'(in, out)' if layout.transposed else '(out, in)'}")
    stacked = [u for u, b in blocks.items() if len(b.grid) > 1]
    if stacked and layout.order:
        words.append(f"gates packed {', '.join(layout.order)} in {', '.join(stacked)}")
    names = [_name_words(u, b, layout) for u, b in blocks.items() if u not in stacked and not _same_letters(u, b)]
    if names:
        words.append(f"names: {', '.join(names)}")
    return words


def _name_words(user: str, block: Block, layout: Layout) -> str:
    """``Wax = W_xh``, or for weights side by side, ``Wf = [U_f W_f]`` (acting on [h; x])."""
    row = block.grid[0]
    if len(row) == 1:
        return f"{user} = {row[0]}"
    row = tuple(reversed(row)) if layout.sources_reversed else row
    return f"{user} = [{' '.join(row)}]"


def _same_letters(user: str, block: Block) -> bool:
    return (
        block.params == (block.params[0],) and user.replace("_", "").lower() == block.params[0].replace("_", "").lower()
    )


def start_words(code: Code, cell: Cell, form: Form) -> str:
    """Where the code starts: from the initial states it takes, from zero for the others."""
    taken = {a.index for a in code.args if a.role == "state"}
    given = [f"{s.name}0" for i, s in enumerate(cell.states) if i in taken and not form.zero_start]
    zero = [f"{s.name}0" for i, s in enumerate(cell.states) if i not in taken or form.zero_start]
    words = [f"starts from the given {' and '.join(given)}"] if given else []
    if zero:
        words.append(f"{'' if given else 'starts from '}{' = '.join(zero)} = 0")
    if taken and form.zero_start:
        words.append("(it ignores the initial state it is given)")
    return " ".join(words) if not given or not zero else f"{words[0]} and {words[1]}"
