"""``bptt check``: the user's code, called with what it asks for and read back in the cell's terms.

``Code`` holds a function (or a method and its class) and knows its weights: the names it reads
(arguments, globals, ``self``'s attributes, a dict's string keys) that are the cell's weights,
each as a ``weights.Block``.  ``Code.call`` makes every argument from a problem under a
``Form`` (how the code lays its arrays out), sets the globals and attributes it reads, calls it
under the time limit, and returns what it returned (``returned`` reads it).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from derive.ir.cell import Cell
from derive.tools.check import bind, weights
from derive.tools.check.bind import Arg
from derive.tools.check.load import CheckError
from derive.tools.check.problem import Problem
from derive.tools.check.run import call_user
from derive.tools.check.weights import Block, Layout

LAYOUTS = {  # how a sequence of vectors is stored, with the axes of (T, B, n) in that order
    "time first": (0, 1, 2),  # (T, B, n)
    "batch first": (1, 0, 2),  # (B, T, n)
    "time last": (2, 1, 0),  # (n, B, T)
}


@dataclass(frozen=True)
class Form:
    """How the code takes and returns arrays: ``inputs`` "ints" (a list of indices), "onehot"
    ((T, n) rows) or a layout of ``LAYOUTS`` (batches); ``columns`` vectors as (n, 1) (or (n, B));
    ``weights`` the blocks' layout; ``zero_start`` every initial state zero (the code takes none,
    or ignores the one it takes)."""

    inputs: str = "ints"
    columns: bool = False
    weights: Layout = field(default_factory=Layout)
    zero_start: bool = False

    @property
    def blocks(self) -> Layout:
        """The weights' layout, with biases as columns where the code's vectors are."""
        return replace(self.weights, columns=self.columns)

    @property
    def layout(self) -> str | None:
        """The layout of a batch of sequences ("ints batch first": indices (B, T)); None for one sequence."""
        name = self.inputs.removeprefix("ints ")
        return name if name in LAYOUTS else None

    @property
    def batched(self) -> bool:
        """Whether the code takes a batch of sequences (vectors then (B, n), or (n, B) as columns)."""
        return self.layout is not None


ONE_SEQUENCE = "one sequence"  # (T, n): a layer that takes one sequence, of a problem of B = 1


def to_layout(seq: np.ndarray, layout: str) -> np.ndarray:
    """A (T, B, n) array in the user's layout."""
    if layout == ONE_SEQUENCE:
        return np.ascontiguousarray(seq[:, 0])
    return np.ascontiguousarray(seq.transpose(LAYOUTS[layout]))


def from_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The user's array in ``layout`` as (T, B, n)."""
    if layout == ONE_SEQUENCE:
        return array[:, None] if array.ndim == 2 else array
    return array.transpose(np.argsort(LAYOUTS[layout]))


class Code:
    """A function of the user's (``owner`` its class for a method), its arguments bound by name,
    its weights matched to the cell's parameters."""

    def __init__(
        self,
        module: types.ModuleType,
        fn: Callable[..., Any],
        owner: type | None,
        label: str,
        cell: Cell,
        explicit: dict[str, str],
    ) -> None:
        self.module, self.fn, self.owner, self.label, self.cell = module, fn, owner, label, cell
        self.explicit = explicit
        self.method = owner is not None and not isinstance(
            inspect.getattr_static(owner, fn.__name__, None), (staticmethod, classmethod)
        )
        self.globals = bind.global_reads(fn, module)
        self.attributes = bind.attributes(owner) if owner is not None else []
        keys = self._keys()
        names = self._weight_names()
        self.blocks = weights.match(names, cell, explicit)  # a dict's keys hold only what no name does:
        held = frozenset(p for b in self.blocks.values() for p in b.params)
        self.blocks |= weights.match([k for k in keys if k not in names], cell, explicit, held)
        names += [k for k in keys if k not in names]
        self.absent = weights.absent_biases([n for n in names if n not in keys], cell, self.blocks)  # zeros
        self.args = bind.bind(fn, label, cell, {*self.blocks, *self.absent}, method=self.method)
        self.keys = [k for k in self.blocks if k in keys]
        self.returns = bind.returned_names(fn)
        params = bind.arguments(fn, label)
        self.positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
        self.notes: list[str] = []  # what the report says of how the code was read
        self.given: dict[int, str] = {}  # id of an array given to the latest instance: its weight
        self.recorders: dict[str, Recorder] = {}  # the latest instance's optimizers, by weight

    @cached_property
    def taken_states(self) -> frozenset[int]:
        """The cell's states (by index) whose initial value the code takes as an argument."""
        return frozenset(a.index for a in self.args if a.role == "state")

    def note(self, said: str) -> None:
        if said not in self.notes:
            self.notes.append(said)

    @cached_property
    def _dicts(self) -> list[str]:
        """The names of the params dicts the code reads: arguments, globals, attributes."""
        names = [p.name for p in bind.arguments(self.fn, self.label)] + self.globals + self.attributes
        return [n for n in names if bind.role_of(n, self.cell, set()) == bind.Arg(n, "params")]

    def _keys(self) -> list[str]:
        """The names a params dict may hold, if the code reads one: --map's, the string keys the
        module reads (parameters["Wf"]), and the cell's own names for the parameters those miss."""
        if not self._dicts:
            return []
        keys = [*self.explicit, *bind.string_keys(self.fn, self.module, self.globals, self.owner)]
        held = {p for b in weights.match(keys, self.cell, self.explicit).values() for p in b.params}
        return keys + [p for p in self.cell.param_names if p not in held]

    def _weight_names(self) -> list[str]:
        """Every name the code may hold a weight by (but a dict's keys), the first to claim a parameter
        keeping it: its arguments, its class's ``__init__``'s, the globals and attributes it reads."""
        names = [p.name for p in bind.arguments(self.fn, self.label)]
        init = getattr(self.owner, "__init__", object.__init__)
        if init is not object.__init__:
            names += [p.name for p in bind.arguments(init, self.label)]
        return list(dict.fromkeys(names + self.globals + self.attributes))

    def checked(self, params: tuple[str, ...]) -> dict[str, Block]:
        """The blocks that hold only the given parameters (a layer's, not its output layer's)."""
        return {u: b for u, b in self.blocks.items() if set(b.params) <= set(params)}

    def missing(self, params: tuple[str, ...]) -> list[str]:
        """The parameters no name of the user's holds."""
        held = {p for b in self.blocks.values() for p in b.params}
        return [p for p in params if p not in held]

    def value(self, arg: Arg, problem: Problem, form: Form, extra: dict[str, Any]) -> Any:
        """What ``arg`` is given: from the problem under ``form``, or ``extra`` by role (an upstream
        gradient, a cache)."""
        if arg.role in extra:
            return extra[arg.role]
        if arg.role == "weight":
            return self.weight(arg.name, problem, form)
        if arg.role == "params":
            return self.params(problem, form)
        if arg.role == "size":
            return size(arg.dim, problem, self.cell)
        if arg.role == "state":
            return self.state(arg.index, problem, form)
        if arg.role == "inputs":
            return inputs(problem, form)
        if arg.role == "targets":
            return targets(problem, form)
        raise CheckError(
            f"{self.label}: takes {arg.role.replace('upstream', 'an upstream gradient')} "
            f"{arg.name!r}, which bptt check gives only to a layer's backward"
        )

    def params(self, problem: Problem, form: Form) -> dict[str, np.ndarray]:
        return {k: self.weight(k, problem, form) for k in self.keys}

    def weight(self, name: str, problem: Problem, form: Form) -> np.ndarray:
        if name in self.absent:
            n = size(self.absent[name], problem, self.cell)
            return np.zeros((n, 1) if form.columns else n)
        return weights.compose(self.cell, self.blocks[name], form.blocks, problem.params)

    def state(self, index: int, problem: Problem, form: Form) -> np.ndarray:
        value = problem.initial[index]  # (B, n)
        if form.batched:  # (one sequence and the indices of a loss function are of B = 1)
            return value.T.copy() if form.columns else value.copy()
        return value[0].reshape(-1, 1) if form.columns else value[0].copy()

    def prepare(self, problem: Problem, form: Form) -> None:
        """The module's globals that the function reads: weights, dicts of them and sizes."""
        for name, value in self._settings(self.globals, problem, form):
            setattr(self.module, name, value)

    def _settings(self, names: list[str], problem: Problem, form: Form) -> Iterator[tuple[str, Any]]:
        """(name, value) for each of ``names`` that is a weight, a dict of them, or a size."""
        dicts = self._dicts
        for name in names:
            if name in self.blocks or name in self.absent:
                yield name, self._given(name, self.weight(name, problem, form))
            elif name in dicts:
                yield name, self.params(problem, form)
            elif (dim := bind.size_dim(name)) is not None:
                yield name, size(dim, problem, self.cell)

    def instance(self, problem: Problem, form: Form) -> Any:
        """An object of the owner class: made by ``__init__`` when its arguments are weights and sizes,
        otherwise without it; then every weight, dict of them and size attribute set as the problem
        has them, and each weight's optimizer (``U_opt``) a ``Recorder`` of the gradient handed to it."""
        self.given, self.recorders = {}, {}
        obj = self._constructed(problem, form)
        dicts = self._dicts
        for name, value in self._settings(self.attributes, problem, form):
            if name not in dicts or isinstance(getattr(obj, name, None), (dict, type(None))):
                setattr(obj, name, value)  # (a params list __init__ made, as DLFS's layers keep, stays)
        for name in self.attributes:
            if (weight := bind.optimizer_of(name)) in self.blocks:
                setattr(obj, name, self.recorders.setdefault(weight, Recorder()))
        return obj

    def _constructed(self, problem: Problem, form: Form) -> Any:
        owner: Any = self.owner
        if owner.__init__ is object.__init__:
            return owner()
        try:
            args = bind.bind(owner.__init__, self.label, self.cell, set(self.blocks), method=True)
        except CheckError:
            args = None
        if args is None or any(a.role not in ("weight", "size", "params") for a in args):
            known = {a.name for a in args or () if a.role in ("weight", "size", "params")}
            unknown = [p.name for p in bind.arguments(owner.__init__, self.label)[1:] if p.name not in known]
            unknown = [n for n in unknown if bind.role_of(n, self.cell, set(self.blocks)) is None] or unknown
            self.note(
                f"made without running {owner.__name__}.__init__ (bptt check cannot give its {', '.join(unknown)})"
            )
            return owner.__new__(owner)
        kwargs = {a.name: self.value(a, problem, form, {}) for a in args}
        for a in args:
            if a.role == "weight":
                self._given(a.name, kwargs[a.name])
        return call_user(owner, label=f"{owner.__name__}.__init__", **kwargs)

    def _given(self, name: str, array: Any) -> Any:
        """``array``, remembered as the one given for the weight ``name`` (to find its gradient in a
        ``grads`` list beside ``params``)."""
        self.given[id(array)] = name
        return array

    def call(self, problem: Problem, form: Form, extra: dict[str, Any] | None = None, obj: Any = None) -> Any:
        """The function called on ``problem``; ``obj`` the instance for a method."""
        self.prepare(problem, form)
        values = {a.name: self.value(a, problem, form, extra or {}) for a in self.args}
        positional = [values.pop(name) for name in self.positional if name in values]
        fn = getattr(obj, self.fn.__name__) if self.method else self.fn
        try:
            return call_user(fn, *positional, label=self.label, **values)
        except CheckError as e:
            if isinstance(e.__cause__, KeyError) and self._dicts:
                held = ", ".join(self.keys)
                raise CheckError(f"{e} (params holds {held}; give your names with --map NAME=PARAM)") from None
            if isinstance(e.__cause__, AttributeError) and any("__init__" in n for n in self.notes):
                raise CheckError(f"{e} ({self.notes[0]})") from None
            raise


class Recorder:
    """Stands for a weight's optimizer: ``update(w, grad)`` keeps the gradient and returns w unchanged."""

    def __init__(self) -> None:
        self.grad: np.ndarray | None = None

    def update(self, w: Any, grad: Any) -> Any:
        self.grad = np.asarray(grad, dtype=float).copy()
        return w


def size(word: str, problem: Problem, cell: Cell) -> int:
    """The size a size argument names: ``word`` x (the input), h (the first state), y (the target),
    T (the steps), or one of the cell's dimensions."""
    if word == "T":
        return problem.steps
    sizes = cell.sizes(problem.params)
    sizes[cell.inputs[0].dim] = problem.xs.shape[2]
    for state, value in zip(cell.states, problem.initial):
        sizes[state.dim] = value.shape[-1]
    dim = {"x": cell.inputs[0].dim, "h": cell.states[0].dim, "y": cell.targets[0].dim}.get(word, word)
    return sizes[dim]


def inputs(problem: Problem, form: Form) -> Any:
    """The inputs as the form takes them: indices (a list, or (T, B) or (B, T)), one-hot or real rows."""
    if form.inputs.startswith("ints"):
        if problem.ints is None:
            raise CheckError("the cell's inputs are real vectors: this code takes indices")
        if form.layout is None:
            return problem.inputs
        return problem.ints.copy() if form.layout == "time first" else np.ascontiguousarray(problem.ints.T)
    if form.layout is None:  # one-hot rows of one sequence, (T, n)
        return problem.xs[:, 0].copy()
    return to_layout(problem.xs, form.layout)


def targets(problem: Problem, form: Form) -> Any:
    """The targets as the form takes them: class indices (a list, (T, B) or (B, T)) or real vectors."""
    if problem.targets.ndim == 2:  # class indices
        if form.layout is None:
            return problem.labels
        return problem.targets.copy() if form.layout == "time first" else np.ascontiguousarray(problem.targets.T)
    if form.layout is not None:
        return to_layout(problem.targets, form.layout)
    rows = problem.targets[:, 0]
    return [r.reshape(-1, 1) for r in rows] if form.columns else rows.copy()
