"""``bptt check``'s yardstick: the cell's derived module, self-checked before it judges anyone's code.

Built once per check, for the cell (a layer's cell for a layer) and the truncation asked for.
"""

from __future__ import annotations

import dataclasses

from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.ir.cell import Cell
from derive.tools.check.problem import Grads, Problem, derived_answer
from derive.verify.report import load_module
from derive.verify.selfcheck import self_check


class Yardstick:
    def __init__(self, cell: Cell, steps: int, truncate: int | None = None) -> None:
        derivation = derive(cell, steps)
        if truncate is not None:
            derivation = dataclasses.replace(derivation, truncate=truncate)
        source = module_source(derivation)
        self_check(source, cell, "check_right")  # the yardstick is run, poisoned, before it judges
        self.cell, self.derivation = cell, derivation
        self.module = load_module(source, "check_right")

    def answer(self, problem: Problem) -> tuple[float, Grads]:
        return derived_answer(self.module, problem, self.cell)
