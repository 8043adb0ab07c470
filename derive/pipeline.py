"""The symbolic pipeline in one call: cell -> unrolled -> chain -> adjoint -> proof.

``derive(cell, T)`` runs the stages in order and hands back one frozen
``Derivation``; the emitters (``codegen``, ``document``) read only this.

The term-by-term expansion has O(T^2) terms of length O(T), so it is written
out (unrolled equations, every term, the by-definition code) only for
T <= EXPANDED_MAX_STEPS.  Beyond that the derivation keeps what holds for every
T (the factorized formulas and the recurrence), and the equivalence proof is
run at T = EXPANDED_MAX_STEPS.
"""

from __future__ import annotations

from dataclasses import dataclass

from .adjoint import Equivalence, Program, build_program, check_equivalence
from .cell import Cell
from .chain import Expansion, Factorized, differentiable_names, expand_all, factorize
from .unroll import Unrolled, unroll

EXPANDED_MAX_STEPS = 20
MAX_STEPS = 1_000  # verification runs finite differences over every parameter entry: O(P T); ~18 s at T = 1000


@dataclass(frozen=True)
class Derivation:
    cell: Cell
    steps: int
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


def derive(cell: Cell, steps: int) -> Derivation:
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"the number of steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    program = build_program(cell)
    checked = unroll(cell, min(steps, EXPANDED_MAX_STEPS))
    checked_expansions = expand_all(checked)
    equivalence = check_equivalence(program, checked, checked_expansions)
    if not equivalence.holds:
        raise AssertionError(f"the efficient recurrence does not match the expansion: {equivalence.failures}")
    expanded = steps <= EXPANDED_MAX_STEPS
    factorized = {wrt: factorize(cell, wrt) for wrt in differentiable_names(cell)}
    return Derivation(
        cell,
        steps,
        checked if expanded else None,
        checked_expansions if expanded else {},
        factorized,
        program,
        equivalence,
    )
