"""``bptt check`` of a layer: the cell without its loss, under a readout loss.

A layer-style pair (``rnn_forward``/``rnn_backward``, ``TimeLSTM.forward``/``.backward``) computes
a vector at every step (the states h, or an output V h_t) and, given dJ/dv_t for every t, the
gradients of the weights that make it.  It is checked as the cell whose loss is replaced by
J_t = (1/2) |v_t - r_t|^2 for that vector v (the readout) and a random real r_t: a linear readout
of every step, whose upstream gradient v_t - r_t the backward is given.  That cell is derived and
self-checked like any other, so the yardstick is the derivation's.  Which vector the forward
returns (h, or the output layer's y) is found by running it, with its other conventions.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import sympy as sp

from derive.ir import naming
from derive.ir.cell import Cell, Equation, Target
from derive.ir.exprs import CrossEntropy, Softmax, SoftmaxCrossEntropy, SquaredError
from derive.tools.check import code as codes
from derive.tools.check import returned as read
from derive.tools.check.code import Code, Form
from derive.tools.check.load import CheckError
from derive.tools.check.problem import LAYER_BATCH, LAYER_SIZES, PROBE_STEPS, Problem, forward_values, make_problem
from derive.tools.check.targets import (
    CHECK_RTOL,
    Answer,
    Checked,
    as_run,
    error,
    layouts,
    none_ran,
    start_words,
    weight_words,
)

NOT_READ_OUT = (Softmax, CrossEntropy, SoftmaxCrossEntropy, SquaredError)  # probabilities and losses


def readout_state(cell: Cell) -> str:
    """The state the output layer reads (h for the LSTM, not c); the first state if none is read."""
    states = [s.name for s in cell.states]
    for eq in cell.equations:
        if eq.name in cell.outputs:
            for symbol in eq.rhs.atoms(sp.MatrixSymbol):
                base, step = naming.split(symbol.name)
                if step == "t" and base in states:
                    return base
    return states[0]


def readouts(cell: Cell) -> list[str]:
    """What a layer's forward may return: the readout state, then the output layer's vectors (y =
    W_hy h), not its probabilities or its loss."""
    outputs = [
        eq.name
        for eq in cell.equations
        if eq.name in cell.outputs and eq.name != cell.loss and not isinstance(eq.rhs, NOT_READ_OUT)
    ]
    return [readout_state(cell), *outputs]


def _free_name(cell: Cell, wanted: str) -> str:
    taken = set(cell.nodes) | set(cell.param_names) | {v.name for v in (*cell.inputs, *cell.targets)}
    return next(f"{wanted}{suffix}" for suffix in ("", "_up", "_readout") if f"{wanted}{suffix}" not in taken)


def _needed(cell: Cell, node: str) -> set[str]:
    """The output equations ``node`` is computed from, itself included."""
    needed, todo = set(), [node]
    while todo:
        name = todo.pop()
        if name in cell.outputs and name not in needed:
            needed.add(name)
            todo += [naming.split(s.name)[0] for s in cell.equation(name).rhs.atoms(sp.MatrixSymbol)]
    return needed


def layer_cell(cell: Cell, readout: str | None = None) -> Cell:
    """``cell`` with J = squared_error(v, r) on the node ``readout`` (its readout state by default)
    in place of its loss, and without the output equations v does not need."""
    if len(cell.inputs) != 1:
        raise CheckError(f"{cell.name}: a layer is checked on a cell with one input (it has {len(cell.inputs)})")
    readout = readout or readout_state(cell)
    outputs = _needed(cell, readout)
    kept = tuple(eq for eq in cell.equations if eq.name not in cell.outputs or eq.name in outputs)
    node = cell.nodes[readout]
    target = Target(_free_name(cell, "r"), node.dim, "real")
    loss = Equation(_free_name(cell, "J"), SquaredError(node.at("t"), target.at("t")))
    used = {s.name for eq in kept for s in eq.rhs.atoms(sp.MatrixSymbol)}
    return dataclasses.replace(
        cell,
        name=cell.name,  # its document's sections are the cell's (the suspects point there)
        title=f"{cell.title}, read out at {readout}",
        params=tuple(p for p in cell.params if p.name in used),
        targets=(target,),
        equations=(*kept, loss),
        loss=loss.name,
        loss_mode="every",
        path="",
    )


class LayerTarget(Checked):
    """A forward and a backward of the cell ``full``; once settled, ``cell`` is the layer cell of the
    vector ``readout`` the forward returns, and ``sizes`` the sizes it runs at."""

    def __init__(self, forward: Code, backward: Code, full: Cell, seed: int) -> None:
        if (forward.owner, forward.method) != (backward.owner, backward.method):
            raise CheckError(
                f"{forward.label},{backward.label}: a forward and a backward are two functions, or two methods "
                "of one class (they share its object)"
            )
        self.code, self.backward, self.full, self.seed = forward, backward, full, seed
        self.readout = readout_state(full)
        self.cell = layer_cell(full)
        self.sizes, self.batch = LAYER_SIZES[0], LAYER_BATCH
        self.approximate = False  # no form gives the cell's forward: the closest is used
        self.form = self._settle()

    def problem(self, steps: int, rng: np.random.Generator) -> Problem:
        """A batch of real inputs for the full cell's parameters (the output layer's too, for code
        that computes it), at the settled sizes and batch, with real targets for the readout."""
        problem = make_problem(self.full, steps, rng, layer=True, base=self.sizes, batch=self.batch)
        n = self.cell.sizes(problem.params).get(self.cell.targets[0].dim) or problem.initial[0].shape[1]
        return replace(problem, targets=rng.standard_normal((steps, problem.batch, n)))

    def _forms(self) -> Iterator[Form]:
        """The forms of the settled batch: the batched layouts, or one sequence (rows or columns)."""
        kinds = [(k, k == "time last") for k in codes.LAYOUTS] if self.batch > 1 else [(codes.ONE_SEQUENCE, False)]
        for zero, (layout, columns), weights in itertools.product(
            (False, True) if self.code.taken_states else (True,), kinds, layouts(self.full, self.code)
        ):
            yield Form(layout, columns, weights, zero_start=zero)

    def _settle(self) -> Form:
        """The first (sizes, form, readout) under which the forward returns the cell's values; failing
        that, the one under which it comes closest (its forward is then wrong)."""
        errors: list[tuple[Form, CheckError]] = []
        closest: tuple[float, tuple[dict[str, int], int], Form, str] | None = None
        for sizes, batch in itertools.product(LAYER_SIZES, (LAYER_BATCH, 1)):
            self.sizes, self.batch = sizes, batch
            probe = self.problem(PROBE_STEPS, np.random.default_rng(self.seed))
            for form in self._forms():
                try:
                    parts, _ = self._run_forward(probe, form)
                except CheckError as e:
                    errors.append((form, e))
                    continue
                right = forward_values(self.full, as_run(probe, form, self.code.taken_states))
                for readout in readouts(self.full):
                    got = _part(parts, right[readout], form)
                    if got is None:
                        continue
                    off = error(got, right[readout])
                    if off <= CHECK_RTOL:
                        return self._settled((sizes, batch), form, readout)
                    if closest is None or off < closest[0]:
                        closest = (off, (sizes, batch), form, readout)
        if closest is not None:
            self.approximate = True
            return self._settled(*closest[1:])
        if errors:
            raise none_ran(self.code.label, errors)
        raise CheckError(
            f"{self.code.label} returned no array of the states' (or outputs') shape under any layout tried"
        )

    def _settled(self, sizes: tuple[dict[str, int], int], form: Form, readout: str) -> Form:
        (self.sizes, self.batch), self.readout = sizes, readout
        self.cell = layer_cell(self.full, readout)
        return form

    def _run_forward(self, problem: Problem, form: Form) -> tuple[list[Any], Any]:
        """(what the forward returned, as a list, the instance); the notes are of this call alone."""
        self.code.notes.clear()
        self.backward.notes.clear()
        obj = self.code.instance(problem, form) if self.code.method else None
        out = self.code.call(problem, form, obj=obj)
        return (list(out) if isinstance(out, (tuple, list)) else [out]), obj

    def answer(self, problem: Problem) -> Answer:
        """The forward's values and the backward's gradients, given dJ/dv_t = v_t - r_t of the cell's
        values v (of the problem as the code computes it)."""
        parts, obj = self._run_forward(problem, self.form)
        right = forward_values(self.cell, self.as_run(problem))[self.readout]
        values = _part(parts, right, self.form)
        if values is None:
            raise CheckError(f"{self.code.label} returned no array of {self.readout}'s shape")
        upstream = codes.to_layout(right - problem.targets, self.form.inputs)
        extra = {"upstream": upstream, "cache": self._cache(parts, right)}
        out = self.backward.call(problem, self.form, extra=extra, obj=obj)
        named, by_shape, others = read.gradients(
            self.code, read.flatten(out, self.backward.returns), problem, self.form, self._others(problem)
        )
        left = read.left_on(obj, self.code, problem, self.form) if obj is not None else {}
        grads = {**by_shape, **left, **named}
        for name, g in others.items():
            grads[name] = codes.from_layout(g, self.form.inputs) if name == "x" else _state_back(g, self.form)
        return Answer(None, grads, values)

    def _cache(self, parts: list[Any], right: np.ndarray) -> Any:
        """What the forward returned besides the values: its cache (the last such), for the backward."""
        shape = codes.to_layout(right, self.form.inputs).shape
        rest = [p for p in parts if not (read.is_array(p) and p.shape == shape)]
        if not rest and any(a.role == "cache" for a in self.backward.args):
            raise CheckError(f"{self.backward.label} takes a cache, but {self.code.label} returned none")
        return next((p for p in reversed(rest) if not read.is_array(p)), rest[-1] if rest else None)

    def _others(self, problem: Problem) -> dict[str, tuple[int, ...]]:
        out = {"x": codes.to_layout(problem.xs, self.form.inputs).shape}
        for i, s in enumerate(self.cell.states):
            if i in self.code.taken_states:
                out[naming.initial_arg(s.name)] = self.code.state(i, problem, self.form).shape
        return out

    def found(self) -> list[str]:
        form = self.form
        words = [f"inputs {LAYOUT_WORDS[form.inputs]}"]
        if self.readout != readout_state(self.full):
            words.append(f"returns the output layer's {self.readout} at every step")
        words += weight_words(self.code, form.weights, self.cell.param_names)
        words += self.code.notes + [n for n in self.backward.notes if n not in self.code.notes]
        if self.approximate:
            words.append("its forward matches the cell's under no convention tried: compared under the closest")
        words.append(start_words(self.code, self.cell, form))
        return words


LAYOUT_WORDS = {
    codes.ONE_SEQUENCE: "(T, D), one sequence",
    "time first": "(T, N, D), time first",
    "batch first": "(N, T, D), batch first",
    "time last": "(D, N, T), time last",
}


def _part(parts: list[Any], right: np.ndarray, form: Form) -> np.ndarray | None:
    """Of the returned arrays of ``right``'s shape in the form's layout (h, or c beside it), the one
    closest to ``right``, as (T, B, n); None if none is of that shape."""
    shape = codes.to_layout(right, form.inputs).shape
    found = [
        codes.from_layout(np.asarray(p, dtype=float), form.inputs)
        for p in parts
        if read.is_array(p) and p.shape == shape
    ]
    return min(found, key=lambda a: error(a, right), default=None)


def _state_back(g: np.ndarray, form: Form) -> np.ndarray:
    """An initial state's gradient as (B, n)."""
    if form.inputs == codes.ONE_SEQUENCE:
        return g.reshape(1, -1)
    return g.T if form.columns else g
