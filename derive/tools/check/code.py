"""``bptt check``: the user's code, called with what it asks for and read back in the cell's terms.

``Code`` holds a function (or a method and its class) and knows its weights: the names it reads
(arguments, globals, ``self``'s attributes, a dict's string keys) that are the cell's weights,
each as a ``weights.Block``.  ``Code.call`` makes every argument from a problem under a
``Form`` (how the code lays its arrays out), sets the globals and attributes it reads, calls it
under the time limit, and returns what it returned; ``gradients`` reads gradients back from a
return value or from the object, matched to the blocks by name, then by shape.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    def batched(self) -> bool:
        return self.inputs in LAYOUTS


def to_layout(seq: np.ndarray, layout: str) -> np.ndarray:
    """A (T, B, n) array in the user's layout."""
    return np.ascontiguousarray(seq.transpose(LAYOUTS[layout]))


def from_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The user's array in ``layout`` as (T, B, n)."""
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
        *,
        layer: bool = False,
    ) -> None:
        self.module, self.fn, self.owner, self.label, self.cell = module, fn, owner, label, cell
        self.explicit = explicit
        self.globals = bind.global_reads(fn, module)
        self.attributes = bind.attributes(owner) if owner is not None else []
        names = self._weight_names()
        self.blocks = weights.match(names, cell, explicit)
        read = [n for n in names if n not in self._keys()]  # a dict's keys are the whole module's
        self.absent = weights.absent_biases(read, cell, self.blocks)  # zeros, unchecked
        self.layer = layer
        self.args = bind.bind(fn, label, cell, {*self.blocks, *self.absent}, method=owner is not None)
        self.keys = [k for k in self.blocks if k in self._keys()]
        self.given: dict[int, str] = {}  # id of an array given to the latest instance: its weight
        self.recorders: dict[str, Recorder] = {}  # the latest instance's optimizers, by weight

    def _keys(self) -> list[str]:
        """The names a params dict may hold, if the function takes one: --map's, the string keys the
        module reads (parameters["Wf"]), and the cell's own names for the parameters those miss."""
        args = bind.arguments(self.fn, self.label)
        if not any(bind.role_of(p.name, self.cell, set()) == bind.Arg(p.name, "params") for p in args):
            return []
        keys = [*self.explicit, *bind.string_keys(self.module)]
        held = {p for b in weights.match(keys, self.cell, self.explicit).values() for p in b.params}
        return keys + [p for p in self.cell.param_names if p not in held]

    def _weight_names(self) -> list[str]:
        names = [p.name for p in bind.arguments(self.fn, self.label)]
        names += self.globals + self.attributes + self._keys()
        init = getattr(self.owner, "__init__", object.__init__)
        if init is not object.__init__:
            names += [p.name for p in bind.arguments(init, self.label)]
        return list(dict.fromkeys(names))

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
            return {k: self.weight(k, problem, form) for k in self.keys}
        if arg.role == "size":
            return size(arg.dim, problem, self.cell)
        if arg.role == "state":
            return self.state(arg.index, problem, form)
        if arg.role == "inputs":
            return inputs(problem, form)
        if arg.role == "targets":
            return targets(problem, form)
        raise CheckError(f"{self.label}: takes {arg.role} {arg.name!r}, which a {self.kind()} is not given")

    def kind(self) -> str:
        return "layer's forward" if self.layer else "loss function"

    def weight(self, name: str, problem: Problem, form: Form) -> np.ndarray:
        if name in self.absent:
            n = size(self.absent[name], problem, self.cell)
            return np.zeros((n, 1) if form.columns else n)
        layout = replace(form.weights, columns=form.columns)
        return weights.compose(self.cell, self.blocks[name], layout, problem.params)

    def state(self, index: int, problem: Problem, form: Form) -> np.ndarray:
        value = problem.initial[index]  # (B, n)
        if form.batched:
            return value.T.copy() if form.columns else value.copy()
        return value[0].reshape(-1, 1) if form.columns else value[0].copy()

    def prepare(self, problem: Problem, form: Form) -> None:
        """The module's globals that the function reads: weights and sizes, as the problem has them."""
        for name in self.globals:
            if name in self.blocks or name in self.absent:
                setattr(self.module, name, self.weight(name, problem, form))
            elif (dim := bind.size_dim(name)) is not None:
                setattr(self.module, name, size(dim, problem, self.cell))

    def instance(self, problem: Problem, form: Form) -> Any:
        """An object of the owner class: made by ``__init__`` when its arguments are weights and sizes,
        otherwise without it; then every weight and size attribute set as the problem has them, and
        each weight's optimizer (``U_opt``) a ``Recorder`` of the gradient handed to it."""
        assert self.owner is not None
        self.given, self.recorders = {}, {}
        obj = self._constructed(problem, form)
        for name in self.attributes:
            if name in self.blocks or name in self.absent:
                setattr(obj, name, self._given(name, self.weight(name, problem, form)))
            elif (dim := bind.size_dim(name)) is not None:
                setattr(obj, name, size(dim, problem, self.cell))
            elif (weight := bind.optimizer_of(name)) in self.blocks:
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
            return owner.__new__(owner)
        kwargs = {a.name: self.value(a, problem, form, {}) for a in args}
        for a in args:
            if a.role == "weight":
                self._given(a.name, kwargs[a.name])
        return call_user(owner, label=f"{owner.__name__}.__init__", **kwargs)

    def _given(self, name: str, array: np.ndarray) -> np.ndarray:
        """``array``, remembered as the one given for the weight ``name`` (to find its gradient in a
        ``grads`` list beside ``params``)."""
        self.given[id(array)] = name
        return array

    def call(self, problem: Problem, form: Form, extra: dict[str, Any] | None = None, obj: Any = None) -> Any:
        """The function called on ``problem``; ``obj`` the instance for a method."""
        self.prepare(problem, form)
        kwargs = {a.name: self.value(a, problem, form, extra or {}) for a in self.args}
        fn = self.fn if self.owner is None else getattr(obj, self.fn.__name__)
        try:
            return call_user(fn, label=self.label, **kwargs)
        except CheckError as e:
            if isinstance(e.__cause__, KeyError) and any(a.role == "params" for a in self.args):
                held = ", ".join(self.keys)
                raise CheckError(f"{e} (params holds {held}; give your names with --map NAME=PARAM)") from None
            raise


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
    if form.inputs == "ints":
        if problem.ints is None:
            raise CheckError("the cell's inputs are real vectors: this code takes indices")
        return problem.inputs
    if form.inputs == "onehot":
        return problem.xs[:, 0].copy()
    return to_layout(problem.xs, form.inputs)


def targets(problem: Problem, form: Form) -> Any:
    if problem.targets.ndim == 2:  # class indices
        return problem.labels if not form.batched else np.ascontiguousarray(problem.targets.T)
    if form.batched:
        return to_layout(problem.targets, form.inputs)
    rows = problem.targets[:, 0]
    return [r.reshape(-1, 1) for r in rows] if form.columns else rows.copy()


# reading gradients back


def is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def flatten(value: Any) -> list[tuple[str, Any]]:
    """The values a call returned, one level into tuples, lists and dicts: (key or "", value)."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if not isinstance(value, (tuple, list)):
        return [("", value)]
    out: list[tuple[str, Any]] = []
    for v in value:
        if isinstance(v, dict):
            out += [(str(k), x) for k, x in v.items()]
        elif isinstance(v, (tuple, list)) and v and all(is_array(x) for x in v):
            out += [("", x) for x in v]
        else:
            out.append(("", v))
    return out


def loss_of(returned: list[tuple[str, Any]]) -> float | None:
    """The first real scalar returned: the loss."""
    for _, v in returned:
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            return float(v)
        if is_array(v) and v.size == 1:
            return float(v.reshape(()))
    return None


def gradients(
    code: Code, returned: list[tuple[str, Any]], problem: Problem, form: Form, others: dict[str, tuple[int, ...]]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the cell parameters' gradients, the ``others``' (inputs, initial states, by the shapes
    given) found among the returned values: by name where they have keys, then by shape in order."""
    blocks = code.blocks
    shapes = {u: code.weight(u, problem, form).shape for u in blocks}
    found: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    for key, v in returned:
        if key and weights.plain_name(key) in blocks and not is_array(v):
            raise CheckError(f"{code.label}: its gradient {key} is not an array of real numbers (a {type(v).__name__})")
    arrays = [(k, np.asarray(v, dtype=float)) for k, v in returned if is_array(v)]
    for key, g in arrays:
        name = weights.plain_name(key) if key else ""
        if name in blocks and name not in found:
            found[name] = g
        elif key and (other := _other_by_name(name, others, code.cell)) is not None and other not in extra:
            extra[other] = g
    for key, g in arrays:
        if key and (weights.plain_name(key) in found or weights.plain_name(key) in blocks):
            continue
        if any(g is v for v in [*found.values(), *extra.values()]):
            continue
        u = next((u for u in blocks if u not in found and _fits(g, shapes[u])), None)
        if u is not None:
            found[u] = g
            continue
        o = next((o for o in others if o not in extra and g.shape == others[o]), None)
        if o is not None:
            extra[o] = g
    return cut(code, found, problem, form), extra


def _other_by_name(name: str, others: dict[str, tuple[int, ...]], cell: Cell) -> str | None:
    if "x" in others and bind.role_of(name, cell, set()) == Arg(name, "inputs"):
        return "x"
    index = bind.state_index(name, cell)
    if index is not None and f"{cell.states[index].name}0" in others:
        return f"{cell.states[index].name}0"
    return None


def _fits(g: np.ndarray, shape: tuple[int, ...]) -> bool:
    return g.shape == shape or (
        len(shape) <= 2 and 1 in shape + g.shape and g.size == int(np.prod(shape)) and g.ndim <= 2
    )


def cut(code: Code, found: dict[str, np.ndarray], problem: Problem, form: Form) -> dict[str, np.ndarray]:
    """The user's gradients of its arrays, cut into the cell's parameters."""
    out: dict[str, np.ndarray] = {}
    layout = replace(form.weights, columns=form.columns)
    for u, g in found.items():
        out.update(weights.split(code.cell, code.blocks[u], layout, g, problem.params))
    return out


def left_on(obj: Any, code: Code, problem: Problem, form: Form) -> dict[str, np.ndarray]:
    """Gradients the code left on its object: a ``grads`` list beside ``params``, or attributes
    named for the weights (dWx, Wx_grad, grad_Wx)."""
    found: dict[str, np.ndarray] = {}
    params, grads = getattr(obj, "params", None), getattr(obj, "grads", None)
    if isinstance(params, (list, tuple)) and isinstance(grads, (list, tuple)) and len(params) == len(grads):
        for p, g in zip(params, grads):
            if id(p) in code.given and is_array(g):
                found[code.given[id(p)]] = np.asarray(g, dtype=float).copy()
    for name, recorder in code.recorders.items():
        if recorder.grad is not None and name not in found:
            found[name] = recorder.grad
    for attr, value in vars(obj).items() if hasattr(obj, "__dict__") else ():
        name = weights.plain_name(attr)
        if name != attr and name in code.blocks and name not in found and is_array(value):
            found[name] = np.asarray(value, dtype=float).copy()
    return cut(code, found, problem, form)


class Recorder:
    """Stands for a weight's optimizer: ``update(w, grad)`` keeps the gradient and returns w unchanged."""

    def __init__(self) -> None:
        self.grad: np.ndarray | None = None

    def update(self, w: Any, grad: Any) -> Any:
        self.grad = np.asarray(grad, dtype=float).copy()
        return w


def signature_text(fn: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"
