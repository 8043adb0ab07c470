"""``bptt check``'s yardstick: the cell's derived module, self-checked before it judges anyone's code.

Built for the cell (a layer's cell for a layer) and the truncation asked for; a process that
checks several pieces of code against one cell (the tests, say) derives and self-checks it once.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from derive.derivation.pipeline import Derivation, derive
from derive.emit.outputs import module_source
from derive.ir.cell import Cell
from derive.tools.check.problem import Grads, Problem, derived_answer
from derive.verify.report import load_module
from derive.verify.selfcheck import self_check


@lru_cache(maxsize=8)
def _checked(cell: Cell, steps: int, truncate: int | None) -> tuple[Derivation, str]:
    """The derivation and its module's source, the module run, poisoned, by the self-check."""
    derivation = derive(cell, steps)
    if truncate is not None:
        derivation = dataclasses.replace(derivation, truncate=truncate)
    source = module_source(derivation)
    self_check(source, cell, "check_right")
    return derivation, source


class Yardstick:
    def __init__(self, cell: Cell, steps: int, truncate: int | None = None) -> None:
        self.cell = cell
        self.derivation, source = _checked(cell, steps, truncate)
        self.module = load_module(source, "check_right")  # a module of its own: nothing kept across checks

    def answer(self, problem: Problem) -> tuple[float, Grads]:
        return derived_answer(self.module, problem, self.cell)
