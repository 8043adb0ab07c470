"""Runs of diagonal factors: diag(a) diag(b) ... delta^u_t inside the backward program's products.

The delta at the argument of an activation, diag(f'(a_t)) delta^u_t, is read by the carries and
by the gradient of every parameter inside a; the fast path computes each such run once, into an
array of its own, and the expressions that read it read that array (``with_runs``).
"""

from __future__ import annotations

from collections.abc import Collection

import sympy as sp

from derive.derivation.adjoint import Program
from derive.ir.exprs import Diag, add, mul

Run = tuple[tuple[Diag, ...], sp.MatrixSymbol]  # diag(a) diag(b) ... delta^u_t


def runs(expr: sp.Basic, deltas: Collection[str] | Collection[Run]) -> list[Run]:
    """The runs diag(a) ... diag(b) delta^u_t inside the products of ``expr``, some a more than a name,
    for the delta symbols named in ``deltas`` (or the runs listed there)."""
    found: list[Run] = []
    for mm in [expr] if isinstance(expr, sp.MatMul) else [a for a in _terms(expr) if isinstance(a, sp.MatMul)]:
        args = mm.args
        for j, delta in enumerate(args):
            if not isinstance(delta, sp.MatrixSymbol):
                continue
            i = j
            while i > 0 and isinstance(args[i - 1], Diag):
                i -= 1
            run = (tuple(args[i:j]), delta)
            if i < j and not all(isinstance(d.arg, sp.MatrixSymbol) for d in run[0]):
                if delta.name in deltas or run in deltas:
                    found.append(run)
    return found


def distributed(expr: sp.Basic) -> sp.Basic:
    """Products over sums multiplied out, one level: (I + U^T diag(a)) delta -> delta + U^T diag(a) delta."""
    if isinstance(expr, sp.MatAdd):
        return add(*(distributed(term) for term in expr.args))
    if isinstance(expr, sp.MatMul):
        for i, factor in enumerate(expr.args):
            if isinstance(factor, sp.MatAdd):
                before, after = expr.args[:i], expr.args[i + 1 :]
                return add(*(distributed(mul(*before, term, *after)) for term in factor.args))
    return expr


def inner_deltas(program: Program, deltas: set[str]) -> list[Run]:
    """The runs that two or more of the carries and gradients read, in the order first read."""
    counts: dict[Run, int] = {}
    for expr in [c.expr for c in program.carries] + [a.expr for a in program.accumulates]:
        for run in runs(distributed(expr), deltas):
            counts[run] = counts.get(run, 0) + 1
    return [run for run, n in counts.items() if n >= 2]


def with_runs(expr: sp.Basic, symbols: dict[Run, sp.MatrixSymbol]) -> sp.Basic:
    """``expr`` with each run in ``symbols`` replaced by its array's symbol."""
    for (diags, delta), symbol in symbols.items():
        expr = with_factors(expr, (*diags, delta), symbol)
    return expr


def with_factors(expr: sp.Basic, factors: tuple[sp.Basic, ...], symbol: sp.MatrixSymbol) -> sp.Basic:
    """``expr`` with the first run of ``factors`` in each of its products read from ``symbol``."""
    if isinstance(expr, sp.MatAdd):
        return add(*(with_factors(term, factors, symbol) for term in expr.args))
    if not isinstance(expr, sp.MatMul):
        return expr
    args, n = list(expr.args), len(factors)
    for i in range(len(args) - n + 1):
        if tuple(args[i : i + n]) == factors:
            return mul(*args[:i], symbol, *args[i + n :])
    return expr


def reading_runs(expr: sp.Basic, symbols: dict[Run, sp.MatrixSymbol]) -> sp.Basic:
    """``expr`` multiplied out and reading the inner deltas' arrays, where there are any."""
    return with_runs(distributed(expr), symbols) if symbols else expr


def _terms(expr: sp.Basic) -> list[sp.Basic]:
    return list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]
