"""The symbolic pipeline in one call: cell -> unrolled -> chain -> adjoint -> proof.

``derive(cell, T)`` runs the stages in order and hands back one frozen
``Derivation``; the emitters (``codegen``, ``document``) read only this.

The term-by-term expansion has O(T^2) terms of length O(T) (exponentially many
for a gated cell), so it is written out (unrolled equations, every term, the
by-definition code) only for T <= EXPANDED_MAX_STEPS and at most
EXPANDED_MAX_TERMS terms.  Beyond that the derivation keeps what holds for every
T (the factorized formulas and the recurrence), and the equivalence proof runs
at the largest T that fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import naming
from .adjoint import Equivalence, Program, build_program, check_equivalence
from .cell import Cell
from .chain import Expansion, Factorized, differentiable_names, expand_all, factorize
from .unroll import Unrolled, symbols_in, unroll

EXPANDED_MAX_STEPS = 20
EXPANDED_MAX_TERMS = 3_000  # a gated cell's terms grow exponentially in T: a GRU has ~4^T / 3 per weight
MAX_STEPS = 1_000  # verification runs finite differences over every parameter entry: O(P T); ~18 s at T = 1000


@dataclass(frozen=True)
class Derivation:
    cell: Cell
    steps: int
    expandable: int  # the largest T whose expansion this cell writes out (<= EXPANDED_MAX_STEPS)
    unrolled: Unrolled | None  # None beyond EXPANDED_MAX_STEPS
    expansions: dict[str, Expansion]  # by what is differentiated; empty beyond EXPANDED_MAX_STEPS
    factorized: dict[str, Factorized]  # for every T
    program: Program
    equivalence: Equivalence

    @property
    def expanded(self) -> bool:
        """Whether the expansion is written out term by term."""
        return self.unrolled is not None

    def term_count(self, wrt: str) -> int:
        return self.factorized[wrt].total(self.steps)


def check_supported(cell: Cell) -> None:
    """Raise NotImplementedError, naming the feature, for a valid spec this version cannot derive yet."""
    if cell.loss_mode == "last":
        loss = cell.equation(cell.loss).rhs
        reads = {naming.split(s.name)[0] for s in symbols_in(loss)}
        targets = {t.name for t in cell.targets}
        if not reads - targets <= cell.outputs:
            raise NotImplementedError(
                f"{cell.name}: a many-to-one loss that reads a state or a parameter directly; "
                "name its prediction first (y = V h; J = squared_error(y, r))"
            )
    if len(cell.states) != 1:
        names = ", ".join(s.name for s in cell.states)
        raise NotImplementedError(f"{cell.name}: several states ({names}); one state (h) is supported for now")
    if len(cell.inputs) != 1 or len(cell.targets) != 1:
        raise NotImplementedError(f"{cell.name}: one input and one target are supported for now")


def derive(cell: Cell, steps: int) -> Derivation:
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"the number of steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    check_supported(cell)
    program = build_program(cell)
    factorized = {wrt: factorize(cell, wrt) for wrt in differentiable_names(cell)}

    def affordable(t: int) -> bool:
        return t <= EXPANDED_MAX_STEPS and sum(f.total(t) for f in factorized.values()) <= EXPANDED_MAX_TERMS

    expandable = 1  # the longest sequence whose expansion is written out for this cell
    while expandable < EXPANDED_MAX_STEPS and affordable(expandable + 1):
        expandable += 1
    check_steps = min(steps, expandable)
    checked = unroll(cell, check_steps)
    checked_expansions = expand_all(checked)
    equivalence = check_equivalence(program, checked, checked_expansions)
    if not equivalence.holds:
        raise AssertionError(f"the efficient recurrence does not match the expansion: {equivalence.failures}")
    expanded = check_steps == steps
    return Derivation(
        cell,
        steps,
        expandable,
        checked if expanded else None,
        checked_expansions if expanded else {},
        factorized,
        program,
        equivalence,
    )
