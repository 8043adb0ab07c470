"""The symbolic pipeline in one call: cell -> unrolled -> chain -> adjoint -> proof.

``derive(cell, T)`` runs the stages in order and hands back one frozen
``Derivation``; the emitters (``codegen``, ``document``) read only this.
"""

from __future__ import annotations

from dataclasses import dataclass

from .adjoint import Equivalence, Program, build_program, check_equivalence
from .cell import Cell
from .chain import Expansion, expand_all
from .unroll import Unrolled, unroll


@dataclass(frozen=True)
class Derivation:
    cell: Cell
    unrolled: Unrolled
    expansions: dict[str, Expansion]  # by what is differentiated: params, then initial states
    program: Program
    equivalence: Equivalence

    @property
    def steps(self) -> int:
        return self.unrolled.steps


def derive(cell: Cell, steps: int) -> Derivation:
    unrolled = unroll(cell, steps)
    expansions = expand_all(unrolled)
    program = build_program(cell)
    equivalence = check_equivalence(program, unrolled, expansions)
    if not equivalence.holds:
        raise AssertionError(f"the efficient recurrence does not match the expansion: {equivalence.failures}")
    return Derivation(cell, unrolled, expansions, program, equivalence)
