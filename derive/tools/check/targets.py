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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from derive.ir import naming
from derive.ir.cell import Cell
from derive.tools.check import returned as read
from derive.tools.check.code import Code, Form
from derive.tools.check.load import CheckError
from derive.tools.check.problem import LAYER_BATCH, PROBE_STEPS, Grads, Problem, make_problem
from derive.tools.check.weights import Block, Layout, gate_orders, letters
from derive.tools.check.yardstick import Yardstick
from derive.verify.report import max_rel_error

CHECK_RTOL = 1e-6  # the user's float64 code against the derivation: rounding, and more (losses, states, gradients)


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


class Checked:
    """What both kinds of target share: the code, its form once found, and what was found, in words.
    The code is always called on the problem as drawn (its random initial states); the derivation
    answers ``as_run(problem)``, the problem as the code computes it."""

    code: Code
    form: Form
    cell: Cell
    readout = ""  # the vector a layer returns at every step (none for a loss function)

    def found(self) -> list[str]:
        raise NotImplementedError

    def answer(self, problem: Problem) -> Answer:
        raise NotImplementedError

    def as_run(self, problem: Problem) -> Problem:
        return as_run(problem, self.form, self.code.taken_states)

    def ignored(self) -> list[str]:
        """The initial states the code takes and ignores (its gradient of them is then zero): h0, c0."""
        if not self.form.zero_start:
            return []
        return [naming.initial_arg(s.name) for i, s in enumerate(self.cell.states) if i in self.code.taken_states]


SEQUENCE_FORMS = (("ints", True), ("ints", False), ("onehot", False), ("onehot", True))  # (inputs, columns)
BATCH_FORMS = (
    ("ints batch first", False),
    ("ints time first", False),
    ("batch first", False),
    ("time first", False),
    ("time last", True),
)
INPUT_WORDS = {
    "ints": "as a list of indices",
    "onehot": "as (T, D) rows",
    "ints batch first": "as indices (N, T), a batch",
    "ints time first": "as indices (T, N), a batch",
    "batch first": "(N, T, D), batch first",
    "time first": "(T, N, D), time first",
    "time last": "(D, N, T), time last",
}


VECTOR_WORDS = {  # (columns, a batch)
    (False, False): "vectors as rows (n,)",
    (True, False): "vectors as columns (n, 1)",
    (False, True): "vectors as rows (N, n)",
    (True, True): "vectors as columns (n, N)",
}


class LossTarget(Checked):
    """A loss function or method; its form is settled by its loss, or failing one, by its gradients."""

    def __init__(self, code: Code, cell: Cell, yardstick: Yardstick, seed: int) -> None:
        self.code, self.cell, self.yardstick = code, cell, yardstick
        self.mean = ""  # "", or what the loss is averaged over: MEANS
        self.batch = 1  # one sequence at a time, or a batch of LAYER_BATCH
        self.form = self._settle_batch(seed)

    def problem(self, steps: int, rng: np.random.Generator) -> Problem:
        return make_problem(self.cell, steps, rng, layer=False, batch=self.batch)

    def _settle_batch(self, seed: int) -> Form:
        """One sequence at a time; a batch where no form of one sequence is exactly the code's; failing
        both, the closest form of one sequence (or of a batch, if one sequence never runs)."""
        found: list[tuple[Form | None, bool, CheckError | None, int]] = []
        for batch in (1, LAYER_BATCH):
            self.batch = batch
            try:
                form, exact = self._settle(self.problem(PROBE_STEPS, np.random.default_rng(seed)))
            except CheckError as e:
                found.append((None, False, e, batch))
                continue
            if exact:
                return form
            found.append((form, False, None, batch))
        chosen, _, error, self.batch = next((f for f in found if f[0] is not None), found[0])
        if chosen is None:
            assert error is not None
            raise error
        return chosen

    def _forms(self, starts: tuple[bool, ...]) -> Iterator[Form]:
        kinds = BATCH_FORMS if self.batch > 1 else SEQUENCE_FORMS
        for zero, (inputs, columns), layout in itertools.product(starts, kinds, layouts(self.cell, self.code)):
            yield Form(inputs, columns, layout, zero_start=zero)

    def _settle(self, problem: Problem) -> tuple[Form, bool]:
        """(the form, exact): the first form whose loss is the cell's (up to a mean), from the given
        initial state or from zero, or under which every gradient matches; failing those, the form
        under which most gradients match, from the given initial state before zero."""
        errors: list[tuple[Form, CheckError]] = []
        best: tuple[tuple[int, float], Form] | None = None
        for form in self._forms((False, True) if self.code.taken_states else (True,)):
            try:
                out, obj = self._returned(problem, form)
                loss = read.loss_of(out)
                right_loss, right = self.yardstick.answer(as_run(problem, form, self.code.taken_states))
                if loss is not None and (mean := _mean(loss, right_loss, problem)) is not None:
                    self.mean = mean
                    return form, True
                score = _agreement(self._grads(out, obj, problem, form), right)
            except CheckError as e:
                errors.append((form, e))
                continue
            if score[0] == len(self.cell.param_names):
                return form, True
            if best is None or score > best[0]:
                best = (score, form)
        if best is not None:
            return best[1], False
        raise none_ran(self.code.label, errors)

    def _returned(self, problem: Problem, form: Form) -> tuple[list[tuple[str, Any]], Any]:
        """What one call returned, and its object; the code's notes are of this call alone."""
        self.code.notes.clear()
        obj = self.code.instance(problem, form) if self.code.method else None
        return read.flatten(self.code.call(problem, form, obj=obj), self.code.returns), obj

    def _grads(self, out: list[tuple[str, Any]], obj: Any, problem: Problem, form: Form) -> Grads:
        """The gradients it returned, with those left on its object; names come before shapes."""
        named, by_shape, _ = read.gradients(self.code, out, problem, form, {})
        left = read.left_on(obj, self.code, problem, form) if obj is not None else {}
        return {**by_shape, **left, **named}

    def answer(self, problem: Problem) -> Answer:
        """The user's loss and gradients, a mean's multiplied back into the sum the cell's J is."""
        out, obj = self._returned(problem, self.form)
        loss, grads = read.loss_of(out), self._grads(out, obj, problem, self.form)
        scale = MEANS[self.mean](problem)
        return Answer(None if loss is None else loss / scale, {k: g / scale for k, g in grads.items()})

    def found(self) -> list[str]:
        form, words = self.form, []
        words.append(f"inputs {INPUT_WORDS[form.inputs]}")
        if _takes_vectors(self.code):
            words.append(VECTOR_WORDS[form.columns, form.batched])
        words += weight_words(self.code, form.weights, self.cell.param_names)
        words += self.code.notes
        words.append(start_words(self.code, self.cell, form))
        if self.mean:
            words.append(f"loss averaged over {self.mean} (its gradients compared times that)")
        return words


def as_run(problem: Problem, form: Form, taken: frozenset[int]) -> Problem:
    """The problem as code of ``form`` that takes the initial states ``taken`` computes it: every
    initial state it does not take, or ignores, zero."""
    if form.zero_start:
        return problem.starting_at_zero()
    return replace(problem, initial=[v if i in taken else np.zeros_like(v) for i, v in enumerate(problem.initial)])


def _agreement(grads: Grads, right: Grads) -> tuple[int, float]:
    """(how many gradients match the right ones, minus the median error): larger is closer."""
    errors = [error(grads[p], right[p]) for p in right if p in grads]
    matched = sum(e <= CHECK_RTOL for e in errors)
    return matched, -float(np.median(errors)) if errors else -np.inf


def none_ran(label: str, errors: list[tuple[Form, CheckError]]) -> CheckError:
    """Bad usage when no form runs the code: the error met under the most input layouts (the first of
    those), said after the forms tried, unless every form met it (then it is the code's, whatever
    the form)."""
    layouts_of: dict[str, set[str]] = {}
    for form, e in errors:
        layouts_of.setdefault(str(e), set()).add(f"{form.inputs}{form.columns}")
    said = [str(e) for _, e in errors]
    most = max(dict.fromkeys(said), key=lambda m: ("made without running" in m, len(layouts_of[m])))
    if len(layouts_of) == 1:
        return errors[0][1]
    return CheckError(
        f"{label}: it runs under none of the {len(errors)} conventions tried (layouts, vectors as rows or "
        f"columns, weights (out, in) or (in, out), gate orders); most often: {most}"
    )


def error(got: np.ndarray | float, want: np.ndarray | float) -> float:
    """The relative error of a gradient; infinite for a shape that is not the right one, or a NaN."""
    e = max_rel_error(got, want)
    return e if np.isfinite(e) else float("inf")


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
        if abs(user - want) <= CHECK_RTOL * abs(want) and (mean != "the batch" or problem.batch > 1):
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
    """Whether a name is its one parameter's but for case and underscores (Wxh is W_xh): not said."""
    return block.params == (block.params[0],) and letters(user) == letters(block.params[0])


def start_words(code: Code, cell: Cell, form: Form) -> str:
    """Where the code starts: from the initial states it takes, from zero for the others."""
    taken = code.taken_states
    given = [naming.initial_arg(s.name) for i, s in enumerate(cell.states) if i in taken and not form.zero_start]
    zero = [naming.initial_arg(s.name) for i, s in enumerate(cell.states) if i not in taken or form.zero_start]
    words = [f"starts from the given {' and '.join(given)}"] if given else []
    if zero:
        words.append(f"{'' if given else 'starts from '}{' = '.join(zero)} = 0")
    if taken and form.zero_start:
        words.append("(it ignores the initial state it is given)")
    return " ".join(words) if not given or not zero else f"{words[0]} and {words[1]}"
