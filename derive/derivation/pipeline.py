"""The symbolic pipeline in one call: cell -> unrolled -> chain -> adjoint -> proof.

``derive(cell, T)`` runs the stages in order and hands back one frozen
``Derivation``; the emitters (``emit.numpy``, ``emit.document``) read only this.

The term-by-term expansion has O(T^2) terms of length O(T) (exponentially many
for a gated cell), so it is written out (unrolled equations, every term, the
by-definition code) only for T <= EXPANDED_MAX_STEPS and at most
EXPANDED_MAX_TERMS terms.  Beyond that the derivation keeps what holds for every
T (the factorized formulas and the recurrence), and the equivalence proof runs
at the largest T that fits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import sympy as sp

from derive.derivation.adjoint import Equivalence, Program, build_program, check_equivalence, noncommutative
from derive.derivation.analytic import factor_matrix
from derive.derivation.chain import (
    Blocks,
    Expansion,
    Factor,
    Factorized,
    as_blocks,
    block_expansion,
    differentiable_names,
    expand_all,
    factorize,
    within_step,
)
from derive.derivation.unroll import StepGraph, Unrolled, symbols_in, unroll
from derive.ir import naming
from derive.ir.cell import Cell, Delay, Unsupported
from derive.ir.exprs import outer_terms

EXPANDED_MAX_STEPS = 20
EXPANDED_MAX_TERMS = 3_000  # a gated cell's terms grow exponentially in T: a GRU has ~4^T / 3 per weight
# the proof expands every path of the unrolled graph into monomials of the local Jacobians: a path whose
# factors are sums (I + diag(1 - h^2) U for a residual cell) stands for the product of their numbers of
# terms, and each monomial has about T factors; its cost grows as monomials x T (an LSTM has ~4.8^T paths
# per weight; a residual cell doubles its monomials at every step)
PROOF_MAX_MONOMIAL_STEPS = 5_000  # about 5 s of SymPy at most (an LSTM at T = 3: 3438, 2.5 s)
MAX_STEPS = 1_000  # verification runs finite differences over every parameter entry: O(P T); ~18 s at T = 1000


@dataclass(frozen=True)
class Derivation:
    cell: Cell
    steps: int
    expandable: int  # the largest T whose expansion this cell writes out (<= EXPANDED_MAX_STEPS)
    unrolled: Unrolled | None  # None beyond EXPANDED_MAX_STEPS
    expansions: dict[str, Expansion]  # by what is differentiated; empty beyond EXPANDED_MAX_STEPS
    factorized: dict[str, Factorized | Blocks]  # for every T
    program: Program
    equivalence: Equivalence
    truncate: int | None = None  # truncated BPTT: each inner sum keeps its last K steps (k > t - K)

    @property
    def expanded(self) -> bool:
        """Whether the expansion is written out term by term."""
        return self.unrolled is not None

    @property
    def blocks(self) -> bool:
        """Whether the terms are written at the level of the stacked state (a cell with several states)."""
        return len(self.cell.states) > 1

    def term_count(self, wrt: str) -> int:
        """The number of terms written for dJ/dw (block products for a cell with several states)."""
        f = self.factorized[wrt]
        return f.block_total(self.steps, self.truncate) if isinstance(f, Blocks) else f.total(self.steps, self.truncate)

    def _repr_markdown_(self) -> str:
        """A notebook shows a derivation as maths: the cell, the chain rule, the recurrence."""
        from derive.emit.document.notebook import (
            markdown,  # display reads the document's LaTeX, which reads this module
        )

        return markdown(self)

    def _repr_latex_(self) -> str:
        from derive.emit.document.notebook import latex_display

        return latex_display(self)

    def path_count(self, wrt: str) -> int:
        """The number of paths from J to w in the unrolled graph: the products the terms stand for."""
        return self.factorized[wrt].total(self.steps, self.truncate)


def check_supported(cell: Cell) -> None:
    """Raise ``Unsupported`` (a NotImplementedError), naming the feature and the equation that needs it, for a
    valid spec this version cannot derive yet."""
    if cell.loss_mode == "last":
        loss = cell.equation(cell.loss).rhs
        reads = {naming.split(s.name)[0] for s in symbols_in(loss)}
        targets = {t.name for t in cell.targets}
        if not reads - targets <= cell.outputs:
            where = cell.where(cell.loss)
            raise Unsupported(
                f"{'' if where else cell.name + ': '}a many-to-one loss that reads a state or a parameter "
                "directly; name its prediction first (y = V h; J = squared_error(y, r))",
                where,
            )
    now = frozenset(naming.step_name(s.name, "t") for s in cell.states)
    for state in cell.states:
        found = within_step(cell, naming.step_name(cell.loss, "t"), naming.step_name(state.name, "t-1"), avoid=now)
        if found:
            where = cell.where(naming.split(found[0][-1].num)[0])  # the equation that reads the state
            read, source = (state.read_as, state.source) if isinstance(state, Delay) else (f"{state.name}[t-1]", "")
            raise Unsupported(
                f"{'' if where else cell.name + ': '}the loss reads {read} other than through a state "
                "of step t; "
                + (
                    f"compute the prediction from {state.name} of the same step"
                    if not source
                    else "an output that reads an earlier step is not supported yet"
                ),
                where,
            )


def monomial_weight(cell: Cell):
    """A path's number of monomials: the product over its factors of the terms of each local Jacobian."""
    graph = StepGraph(cell)

    @cache
    def terms(factor: Factor) -> int:
        matrix = factor_matrix(graph, factor)
        places = outer_terms(matrix) or (matrix,)  # a weight's places: each its own L's monomials
        return sum(len(sp.Add.make_args(sp.expand(noncommutative(getattr(m, "left", m))))) for m in places)

    def weight(path: tuple[Factor, ...]) -> int:
        n = 1
        for factor in path:
            n *= terms(factor)
        return n

    return weight


def derive(cell: Cell, steps: int, truncate: int | None = None) -> Derivation:
    """The derivation of dJ/dw for T = ``steps``; with ``truncate`` = K, truncated BPTT's: each
    inner sum keeps its last K steps."""
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"the number of steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    if truncate is not None and (not isinstance(truncate, int) or truncate < 1):
        raise ValueError(f"truncate must be an integer >= 1 (or None), got {truncate!r}")
    check_supported(cell)
    program = build_program(cell)
    factorized = {wrt: factorize(cell, wrt) for wrt in differentiable_names(cell)}

    def written(t: int) -> int:
        return sum(
            f.block_total(t, truncate) if isinstance(f, Blocks) else f.total(t, truncate) for f in factorized.values()
        )

    weighted = [replace(as_blocks(f), weight=monomial_weight(cell)) for f in factorized.values()]

    def provable(t: int) -> bool:
        return t * sum(f.total(t) for f in weighted) <= PROOF_MAX_MONOMIAL_STEPS

    expandable = 1  # the longest sequence whose expansion is written out for this cell
    while expandable < EXPANDED_MAX_STEPS and written(expandable + 1) <= EXPANDED_MAX_TERMS:
        expandable += 1
    check_steps = 1  # the longest sequence, up to T, whose every path the proof expands
    while check_steps < min(steps, EXPANDED_MAX_STEPS) and provable(check_steps + 1):
        check_steps += 1
    proof_truncate = truncate
    if truncate is not None and steps >= 2:
        # the truncated runs are proved where they cut: at T > K (the code takes K as a constant)
        check_steps = max(check_steps, 2)
        proof_truncate = min(truncate, check_steps - 1)
    checked = unroll(cell, check_steps)
    checked_expansions = expand_all(checked)  # every path: for a cell with several states, only for the proof
    equivalence = check_equivalence(program, checked, checked_expansions, proof_truncate)
    if not equivalence.holds:
        raise AssertionError(f"the efficient recurrence does not match the expansion: {equivalence.failures}")
    unrolled, expansions = None, {}
    if steps <= expandable:
        if len(cell.states) > 1:
            unrolled = unroll(cell, steps)
            blocks = {wrt: f for wrt, f in factorized.items() if isinstance(f, Blocks)}
            expansions = {wrt: block_expansion(cell, steps, f, truncate) for wrt, f in blocks.items()}
        else:  # one state: the terms are the paths themselves
            unrolled = checked if check_steps == steps else unroll(cell, steps)
            full = checked_expansions if check_steps == steps else expand_all(unrolled)
            expansions = {wrt: e.truncated(truncate) for wrt, e in full.items()}
    return Derivation(cell, steps, expandable, unrolled, expansions, factorized, program, equivalence, truncate)
