"""Stage 2: unroll a cell over T steps into concrete, step-indexed equations.

``unroll(cell, T)`` substitutes t = 1..T into the cell's step-relative equations.
The result is the computation graph of the whole sequence: ``z@1 = W_xh x@1 +
W_hh h@0``, ..., ``J@T = ...``.  Initial states (``h@0``) are inputs of the graph,
not functions of any parameter, so every inner chain-rule sum starts at k = 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import sympy as sp
from sympy import MatrixSymbol

from derive.ir import naming
from derive.ir.cell import Cell


def relabel(expr: sp.Basic, step: int | str, var: str = "t") -> sp.Basic:
    """Move every symbol relative to ``var`` to ``step``: ``h@t-1`` becomes ``h@2`` at step 3,
    ``h@j-1`` at step "j"; other symbols are kept."""
    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        name = naming.move(sym.name, step, var)
        if name != sym.name:
            mapping[sym] = MatrixSymbol(name, *sym.shape)
    return expr.xreplace(mapping)


def at_step(expr: sp.Basic, step: int) -> sp.Basic:
    """Replace every step-relative symbol (``h@t-1``) by its concrete one (``h@{step-1}``)."""
    return relabel(expr, step)


def symbols_in(expr: sp.Basic) -> tuple[MatrixSymbol, ...]:
    """The matrix symbols of ``expr`` in the order they are written, each once."""
    seen: dict[MatrixSymbol, None] = {}
    for node in sp.preorder_traversal(expr):
        if isinstance(node, MatrixSymbol):
            seen.setdefault(node, None)
    return tuple(seen)


class Graph(Protocol):
    """What the analytic stage reads: the cell, each node's equation, and every symbol by name."""

    @property
    def cell(self) -> Cell: ...

    @property
    def rhs(self) -> Mapping[str, sp.Basic]: ...

    @property
    def symbols(self) -> Mapping[str, MatrixSymbol]: ...


@dataclass(frozen=True)
class Unrolled:
    """The equations of the whole sequence, in evaluation order."""

    cell: Cell
    steps: int
    equations: tuple[tuple[MatrixSymbol, sp.Basic], ...]

    @cached_property
    def rhs(self) -> Mapping[str, sp.Basic]:
        return {lhs.name: rhs for lhs, rhs in self.equations}

    @cached_property
    def symbols(self) -> Mapping[str, MatrixSymbol]:
        """Every symbol of the graph by name: computed nodes, inputs, parameters, initial states."""
        out = {lhs.name: lhs for lhs, _ in self.equations}
        for _, rhs in self.equations:
            for sym in symbols_in(rhs):
                out.setdefault(sym.name, sym)
        return out

    @cached_property
    def deps(self) -> Mapping[str, tuple[str, ...]]:
        """The direct arguments of each computed node, in written order."""
        return {lhs.name: tuple(s.name for s in symbols_in(rhs)) for lhs, rhs in self.equations}

    @property
    def losses(self) -> tuple[MatrixSymbol, ...]:
        """J@1, ..., J@T (J@T alone for a many-to-one cell)."""
        return tuple(self.symbols[naming.step_name(self.cell.loss, t)] for t in self.cell.loss_steps(self.steps))

    @property
    def initial_states(self) -> tuple[MatrixSymbol, ...]:
        """h@0, c@0: the declared states' initial values (a delay's, h@-1 or x@0, is zeros, not an argument)."""
        return tuple(self.symbols[naming.step_name(s.name, 0)] for s in self.cell.declared_states)

    def node(self, base: str, step: int) -> MatrixSymbol:
        return self.symbols[naming.step_name(base, step)]


def unroll(cell: Cell, steps: int) -> Unrolled:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"the number of steps must be an integer >= 1, got {steps!r}")
    equations = []
    for t in range(1, steps + 1):
        for eq in cell.computed_at(t, steps):
            lhs = MatrixSymbol(naming.step_name(eq.name, t), *eq.shape)
            equations.append((lhs, at_step(eq.rhs, t)))
    return Unrolled(cell=cell, steps=steps, equations=tuple(equations))


@dataclass(frozen=True)
class StepGraph:
    """One step of the cell at the symbolic steps t, j, k and T: for formulas valid for every T."""

    cell: Cell
    steps: tuple[str, ...] = ("t", "j", "k", "T")

    @cached_property
    def rhs(self) -> Mapping[str, sp.Basic]:
        return {naming.step_name(eq.name, v): relabel(eq.rhs, v) for v in self.steps for eq in self.cell.equations}

    @cached_property
    def symbols(self) -> Mapping[str, MatrixSymbol]:
        out = {}
        for v in self.steps:
            for eq in self.cell.equations:
                out[naming.step_name(eq.name, v)] = MatrixSymbol(naming.step_name(eq.name, v), *eq.shape)
        for rhs in self.rhs.values():
            for sym in symbols_in(rhs):
                out.setdefault(sym.name, sym)
        return out
