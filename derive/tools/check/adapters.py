"""``bptt check``, step two: the user's function called on the problems the check sets.

A problem is one seeded random sequence at one T, in float64.  An adapter calls the user's
function on it through the function's own signature and returns its loss and gradients by the
cell's parameter names:

- ``minchar`` (Karpathy's min-char-rnn: ``lossFun(inputs, targets, hprev)``, inputs and targets
  lists of ints, the weights Wxh, Whh, Why, bh, by read from the module's globals, or passed as
  further arguments named like them; returns loss, dWxh, dWhh, dWhy, dbh, dby, hlast; column
  vectors);
- ``generic`` (``fn(params, xs, labels, h0) -> (loss, grads)``, dicts by name, one sequence:
  xs (T, n_x), labels (T,), h0 (n_h,); a cell with several states takes one initial value each,
  in the order the cell declares them: ``fn(params, xs, labels, h0, c0)``).

User names are matched to the cell's by their letters (``Wxh`` is ``W_xh``), or given with
``--map Wxh=W_xh``.  What the user returns that is not a loss or a gradient is bad usage.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from derive.ir.cell import Cell
from derive.tools.check.load import CheckError, quiet, user_frame

CHECK_SIZES = {"x": 4, "h": 5, "y": 4}  # min-char-rnn reads one vocabulary for inputs and outputs
SEED = 20261129
MINCHAR_WEIGHTS = ("Wxh", "Whh", "Why", "bh", "by")

Grads = dict[str, np.ndarray]


@dataclass
class Problem:
    """One sequence: the cell's parameters (cell shapes), inputs as ints (one-hot), labels, and an
    initial value for each state (h0, c0, ... in the cell's order)."""

    params: dict[str, np.ndarray]
    inputs: list[int]
    labels: list[int]
    initial: list[np.ndarray]  # (n,) each

    def onehot(self, n: int) -> np.ndarray:
        return np.eye(n)[self.inputs]


def input_size(cell: Cell, problem: Problem) -> int:
    """The width of the one-hot inputs: the size of the cell's input."""
    return cell.sizes(problem.params)[cell.inputs[0].dim]


def problems(cell: Cell, steps: tuple[int, ...], seed: int = SEED) -> list[Problem]:
    """One seeded sequence per T: min-char-rnn's sizes for x, h, y, and 6, 7, ... for other dims."""
    rng = np.random.default_rng(seed)
    sizes = {d: CHECK_SIZES.get(d, 6 + i) for i, d in enumerate(cell.dims)}
    out = []
    for t in steps:
        params = {}
        for p in cell.params:
            shape = tuple(sizes[d] for d in p.shape)
            params[p.name] = 0.8 * rng.standard_normal(shape) / np.sqrt(shape[-1])
        inputs = [int(i) for i in rng.integers(0, sizes[cell.inputs[0].dim], t)]
        labels = [int(i) for i in rng.integers(0, sizes[cell.targets[0].dim], t)]
        initial = [0.5 * rng.standard_normal(sizes[state.dim]) for state in cell.states]
        out.append(Problem(params, inputs, labels, initial))
    return out


def _letters(name: str) -> str:
    return name.replace("_", "").lower()


def match_names(user: list[str], cell: Cell, explicit: dict[str, str]) -> dict[str, str]:
    """{user name: cell parameter} by --map first, then by letters (Wxh is W_xh)."""
    params = list(cell.param_names)
    for u, c in explicit.items():
        if c not in params:
            raise CheckError(f"--map {u}={c}: the cell has no parameter {c!r} (it has {', '.join(params)})")
    out = {u: c for u, c in explicit.items() if u in user}
    by_letters = {_letters(p): p for p in params}
    for u in user:
        if u not in out and _letters(u) in by_letters and by_letters[_letters(u)] not in out.values():
            out[u] = by_letters[_letters(u)]
    return out


class Adapter:
    name = ""

    def __init__(self, module: types.ModuleType, fn: Callable[..., Any], cell: Cell, explicit: dict[str, str]):
        self.module, self.fn, self.cell = module, fn, cell
        self.label = getattr(fn, "__name__", "the function")
        self.setup(explicit)

    def setup(self, explicit: dict[str, str]) -> None: ...

    def call(self, problem: Problem) -> tuple[float, Grads]:
        raise NotImplementedError

    hint = ""  # said after an exception the adapter's conventions may explain

    def _invoke(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with quiet():
                return self.fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit and GeneratorExit too: the report must still come
            where = user_frame(e)
            hint = self.hint if isinstance(e, KeyError) else ""
            raise CheckError(f"{self.label}{where} raised {type(e).__name__}: {e}{hint}") from None


class MinChar(Adapter):
    """lossFun(inputs, targets, hprev) -> loss, dWxh, dWhh, dWhy, dbh, dby, hlast."""

    name = "minchar"

    def setup(self, explicit: dict[str, str]) -> None:
        self.weights = list(MINCHAR_WEIGHTS)
        self.names = match_names(self.weights, self.cell, explicit)
        missing = [p for p in self.cell.param_names if p not in self.names.values()]
        if missing:
            raise CheckError(
                f"{self.label}: no min-char-rnn weight for {', '.join(missing)} (its weights are "
                f"{', '.join(self.weights)}); map one with --map NAME=PARAM, or choose another --cell"
            )
        sig = inspect.signature(self.fn)
        self.extra = [p for p in list(sig.parameters)[3:] if p in self.weights]
        if len(sig.parameters) < 3:
            raise CheckError(f"{self.label}: a min-char-rnn lossFun takes (inputs, targets, hprev, ...)")

    def call(self, problem: Problem) -> tuple[float, Grads]:
        sizes = self.cell.sizes(problem.params)
        values = {}
        for w in self.weights:  # each weight as min-char-rnn keeps it: biases as columns
            c = self.names.get(w)
            if c is None:  # a weight the cell does not have (bh for the seed model): zero, unchecked
                x, h, y = (sizes[v.dim] for v in (self.cell.inputs[0], self.cell.states[0], self.cell.targets[0]))
                rows = h if w in ("Wxh", "Whh", "bh") else y
                values[w] = np.zeros((rows, {"Wxh": x, "Whh": h, "Why": h}.get(w, 1)))
            else:
                p = problem.params[c]
                values[w] = p.reshape(-1, 1).copy() if p.ndim == 1 else p.copy()
            setattr(self.module, w, values[w])
        for name, v in (("vocab_size", self.cell.inputs[0]), ("hidden_size", self.cell.states[0])):
            if hasattr(self.module, name):  # min-char-rnn reads these too
                setattr(self.module, name, sizes[v.dim])
        kwargs = {w: values[w] for w in self.extra}
        hprev = problem.initial[0].reshape(-1, 1).copy()
        out = self._invoke(list(problem.inputs), list(problem.labels), hprev, **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) < 1 + len(self.weights):
            n = len(out) if isinstance(out, (tuple, list)) else 1
            raise CheckError(
                f"{self.label} returned {n} value{'s' if n != 1 else ''}; a min-char-rnn lossFun returns "
                f"loss, {', '.join('d' + w for w in self.weights)}, hlast"
            )
        grads = {}
        for w, g in zip(self.weights, out[1 : 1 + len(self.weights)]):
            if w in self.names:
                c = self.names[w]
                g = _gradient(g, self.label, "d" + w)
                want = problem.params[c].shape
                grads[c] = g.reshape(want) if g.size == int(np.prod(want)) and g.ndim != len(want) else g
        return _loss(out[0], self.label), grads


class Generic(Adapter):
    """fn(params, xs, labels, h0) -> (loss, grads), dicts by name, one sequence."""

    name = "generic"

    def setup(self, explicit: dict[str, str]) -> None:
        self.to_cell = {u: c for u, c in explicit.items()}
        self.to_user = {c: u for u, c in self.to_cell.items()}
        names = ", ".join(self.to_user.get(c, c) for c in self.cell.param_names)
        self.hint = f" (params holds {names}; give your names with --map NAME=PARAM)"

    def call(self, problem: Problem) -> tuple[float, Grads]:
        params = {self.to_user.get(c, c): v.copy() for c, v in problem.params.items()}
        xs = problem.onehot(input_size(self.cell, problem))
        out = self._invoke(params, xs, np.array(problem.labels), *(v.copy() for v in problem.initial))
        if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], dict):
            raise CheckError(
                f"{self.label} returned {_shape_of(out)}; expected (loss, grads) with grads a dict by name"
            )
        loss, grads = out
        names = match_names(list(grads), self.cell, self.to_cell)
        return _loss(loss, self.label), {names[u]: _gradient(g, self.label, u) for u, g in grads.items() if u in names}


def _shape_of(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{len(value)} values"
    return f"a {type(value).__name__}"


def _loss(value: Any, label: str) -> float:
    if not isinstance(value, (str, bytes)):
        with contextlib.suppress(TypeError, ValueError):
            array = np.asarray(value)
            if array.dtype.kind in "biuf" and array.size == 1:
                return float(array.reshape(()))
    raise CheckError(f"{label}: its loss is not a real number ({_shape_of(value)})")


def _gradient(value: Any, label: str, name: str) -> np.ndarray:
    """A returned gradient as a float64 array; bad usage (one line) if it is not an array of reals."""
    with contextlib.suppress(TypeError, ValueError):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64)
    raise CheckError(f"{label}: its gradient {name} is not an array of real numbers ({_shape_of(value)})")


ADAPTERS: dict[str, type[Adapter]] = {"minchar": MinChar, "generic": Generic}


def pick_adapter(fn: Callable[..., Any], wanted: str) -> type[Adapter]:
    if wanted != "auto":
        return ADAPTERS[wanted]
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:1] == ["params"] or len(params) == 4 and params[0] not in ("inputs", "x", "xs_ints"):
        return Generic
    if len(params) >= 3:
        return MinChar
    raise CheckError(
        f"{getattr(fn, '__name__', 'the function')}{tuple(params)}: not a signature an adapter knows; "
        "choose one with --adapter minchar|generic"
    )
