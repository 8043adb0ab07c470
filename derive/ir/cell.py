"""Cell IR: the first stage of the pipeline, and the built-in seed cell.

A ``Cell`` is a frozen description of one step of a recurrent network: its
dimensions, parameters, per-step inputs and targets, state vectors, and the
ordered equations that compute each node at step t from the step's inputs, the
parameters and the states at t-1.  A spec that reads further back (h[t-2], x[t-1])
becomes a cell with more states: ``Delay`` states, after the declared ones, each
holding an earlier value (a delay line), so every later stage sees one-step
recurrences only.  Equations are SymPy expressions over
step-relative symbols (``x@t``, ``h@t-1``; see ``naming``), so ``unroll`` only
has to substitute concrete steps.  Conventions: column vectors, numerator-layout
Jacobians, a per-step scalar loss J_t, and the total loss J = sum_t J_t.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import sympy as sp
from sympy import MatrixSymbol

from derive.ir import naming


def dim_symbol(dim: str) -> sp.Symbol:
    """The size of a named dimension: ``dim_symbol("h")`` is n_h."""
    return sp.Symbol(f"n_{dim}", integer=True, positive=True)


@dataclass(frozen=True)
class Param:
    """A trained matrix (shape (rows, cols)) or vector (shape (rows,)), named by dimensions."""

    name: str
    shape: tuple[str, ...]

    @property
    def symbol(self) -> MatrixSymbol:
        rows = dim_symbol(self.shape[0])
        cols = dim_symbol(self.shape[1]) if len(self.shape) == 2 else sp.S.One
        return MatrixSymbol(self.name, rows, cols)


@dataclass(frozen=True)
class Vector:
    """A per-step column vector of dimension ``dim``: an input, target, state or node."""

    name: str
    dim: str

    def at(self, step: int | str) -> MatrixSymbol:
        return MatrixSymbol(naming.step_name(self.name, step), dim_symbol(self.dim), 1)


@dataclass(frozen=True)
class Target(Vector):
    """A per-step target: ``class`` (an integer label, one-hot l_t over ``dim``) or ``real`` (a vector)."""

    kind: str = "class"


@dataclass(frozen=True)
class Delay(Vector):
    """A hidden state of the delay line that reading further back adds: its value at step t is
    ``source`` at step t - ``lag``.  ``h[t-2]`` reads the delay h'_t = h_{t-1} (lag 1) at t-1;
    ``x[t-1]`` reads x'_t = x_t (lag 0) at t-1.  It starts at zeros (h_{-1}, x_0 are zeros) and
    is no argument of the module: it has no initial value of its own to give or differentiate."""

    source: str = ""
    lag: int = 0

    @property
    def read_as(self) -> str:
        """What the spec writes where it reads this delay at step t-1: ``h[t-2]``, ``x[t-1]``."""
        return f"{self.source}[t-{self.lag + 1}]"


@dataclass(frozen=True)
class Equation:
    """``name@t = rhs``; rhs uses step-relative symbols (``@t``, ``@t-1``)."""

    name: str
    rhs: sp.Basic
    # where the spec writes the right-hand side (0: unknown), for a refusal's file:line:col
    line: int = field(default=0, compare=False)
    col: int = field(default=0, compare=False)

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.rhs.shape


@dataclass(frozen=True)
class Cell:
    """One step of a recurrent network; the input of ``unroll``."""

    name: str
    title: str
    dims: tuple[str, ...]
    params: tuple[Param, ...]
    inputs: tuple[Vector, ...]
    targets: tuple[Target, ...]
    states: tuple[Vector, ...]
    equations: tuple[Equation, ...]
    loss: str  # the equation whose value is J_t
    loss_mode: str = "every"  # "every": J = sum_t J_t (many-to-many); "last": J = J_T (many-to-one)
    path: str = field(default="", compare=False)  # the spec file it was read from ("" if none)
    # the named constants (alpha = 0.3, c = dt / tau), in order: each rhs a number or an expression of
    # the earlier ones; the equations hold them as ``Constant``s, each carrying its value
    constants: tuple[Equation, ...] = ()

    @cached_property
    def nodes(self) -> dict[str, Vector]:
        """Every computed vector, keyed by name, with its dimension."""
        by_size = {dim_symbol(d): d for d in self.dims}
        return {eq.name: Vector(eq.name, by_size.get(eq.shape[0], "1")) for eq in self.equations}

    @cached_property
    def outputs(self) -> frozenset[str]:
        """Nodes no state update depends on (y, p, J): with ``loss: last step`` only step T computes them."""
        deps = {
            eq.name: {naming.split(s.name)[0] for s in eq.rhs.atoms(MatrixSymbol) if naming.split(s.name)[1] == "t"}
            for eq in self.equations
        }
        needed: set[str] = set()
        todo = [s.name for s in self.states]
        while todo:
            name = todo.pop()
            if name in needed or name not in deps:
                continue
            needed.add(name)
            todo.extend(deps[name])
        return frozenset(deps) - needed

    def computed_at(self, step: int, steps: int) -> tuple[Equation, ...]:
        """The equations evaluated at ``step`` of ``steps``: all, or none of the outputs before the last step."""
        if self.loss_mode == "last" and step < steps:
            return tuple(eq for eq in self.equations if eq.name not in self.outputs)
        return self.equations

    def loss_steps(self, steps: int) -> range:
        """The steps t whose J_t enters J: every step, or the last only (many-to-one)."""
        return range(steps, steps + 1) if self.loss_mode == "last" else range(1, steps + 1)

    @property
    def declared_states(self) -> tuple[Vector, ...]:
        """The spec's own states, whose initial values (h_0) the module takes and differentiates."""
        return tuple(s for s in self.states if not isinstance(s, Delay))

    @property
    def delays(self) -> tuple[Delay, ...]:
        """The hidden states of the delay lines (h[t-2], x[t-1]), after the declared ones in ``states``."""
        return tuple(s for s in self.states if isinstance(s, Delay))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def sizes(self, params: Mapping[str, object]) -> dict[str, int]:
        """The size of every dimension, read off the shapes of concrete parameters."""
        out: dict[str, int] = {}
        for p in self.params:
            for dim, size in zip(p.shape, getattr(params[p.name], "shape", ())):
                out[dim] = int(size)
        return out

    @property
    def argument(self) -> str:
        """What ``--cell`` takes to name this cell: a built-in's name, else its spec file's path."""
        if not self.path or Path(self.path).resolve() == builtin_path(self.name).resolve():
            return self.name
        return self.path

    def equation(self, name: str) -> Equation:
        return next(e for e in self.equations if e.name == name)

    def where(self, name: str) -> str | None:
        """``path:line:col`` of the equation of node ``name`` in the spec, if known."""
        eq = next((e for e in self.equations if e.name == name), None)
        if eq is None or not self.path or not eq.line:
            return None
        return f"{self.path}:{eq.line}:{eq.col}"


class Unsupported(NotImplementedError):
    """A valid cell this version cannot derive yet.  ``str(e)`` names the feature; ``where`` is the
    ``path:line:col`` of the equation that needs it (None if unknown); the CLI prints both on one line."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


@contextmanager
def refusals_at(cell: Cell, name: str) -> Iterator[None]:
    """Give a refusal raised while differentiating node ``name``'s equation that equation's position."""
    try:
        yield
    except NotImplementedError as e:
        if getattr(e, "where", None) is not None:
            raise
        raise Unsupported(str(e), cell.where(name)) from e


CELLS = Path(__file__).resolve().parents[1] / "spec" / "cells"


def recurrent_params(cell: Cell) -> tuple[str, ...]:
    """The weight matrices that multiply a previous state, directly (U h[t-1]) or through an
    elementwise product (GRU's U_n (r * h[t-1])), in the cell's order of parameters: the ones
    ``bptt flow`` scales; the first is the one whose longest term the unrolled graph highlights."""
    inputs = {v.name for v in cell.inputs}  # an input's delay line (x[t-1]) carries no recurrence
    previous = {
        naming.step_name(s.name, "t-1") for s in cell.states if not (isinstance(s, Delay) and s.source in inputs)
    }
    found: set[str] = set()
    for eq in cell.equations:
        for node in sp.preorder_traversal(eq.rhs):
            if not isinstance(node, sp.MatMul):
                continue
            for i, arg in enumerate(node.args):
                arg = arg.arg if isinstance(arg, sp.Transpose) else arg  # E^T h[t-1] reads the state through E
                if isinstance(arg, sp.MatrixSymbol) and arg.name in cell.param_names:
                    right = node.args[i + 1 :]
                    if any(s.name in previous for r in right for s in r.atoms(sp.MatrixSymbol)):
                        found.add(arg.name)
    return tuple(p.name for p in cell.params if p.name in found and len(p.shape) == 2)


def builtin_names() -> tuple[str, ...]:
    """The built-in cells: the .cell files shipped in derive/spec/cells."""
    return tuple(sorted(p.stem for p in CELLS.glob("*.cell")))


def builtin_path(name: str) -> Path:
    return CELLS / f"{name}.cell"


def load_builtin(name: str) -> Cell:
    from derive.spec.parser import read  # spec builds Cells: import it here, not at module level

    return read(builtin_path(name))


def seed_rnn() -> Cell:
    """The origin document's vanilla RNN (derive/spec/cells/rnn.cell), with no biases.

    z_t = W_xh x_t + W_hh h_{t-1};  h_t = tanh(z_t);  y_t = W_hy h_t;
    p_t = softmax(y_t);  J_t = cross_entropy(p_t, l_t) = -l_t^T log p_t.
    """
    return load_builtin("rnn")
