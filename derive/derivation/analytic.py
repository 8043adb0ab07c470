"""Stage 4b: substitute the rule table into the chain-rule terms.

Each factor d num/d den of a term becomes the matrix the rules give for that edge
of the unrolled graph; a term becomes the ordered product of its factors, with
dJ_t/dp_t dp_t/dy_t collapsed to (p_t - l_t)^T where the loss is softmax +
cross-entropy, and the last factor applied: a row vector g^T times d(W v)/dW is
the outer product g v^T; times an ordinary Jacobian it is transposed back to a
column.  Either way the term has the shape of what it differentiates.
"""

from __future__ import annotations

import sympy as sp

from derive.derivation.chain import Factor, Term
from derive.derivation.rules import collapsed_loss, jacobian
from derive.derivation.unroll import Graph
from derive.ir import naming
from derive.ir.cell import refusals_at
from derive.ir.exprs import contract, mul, outer_terms, transpose


def factor_matrix(unrolled: Graph, factor: Factor) -> sp.Basic:
    """The local derivative d num / d den as a matrix expression (or ``Outer``)."""
    with refusals_at(unrolled.cell, naming.split(factor.num)[0]):
        return jacobian(unrolled.rhs[factor.num], unrolled.symbols[factor.den], unrolled.symbols[factor.num])


def collapsed_head(unrolled: Graph, factors: tuple[Factor, ...]) -> tuple[sp.Basic | None, int]:
    """(p_t - l_t)^T and 2 when the path starts with softmax + cross-entropy (or sigmoid + binary
    cross-entropy), else (None, 0)."""
    if len(factors) >= 2 and factors[0].den == factors[1].num:
        p = unrolled.symbols[factors[0].den]
        users = [n for n, rhs in unrolled.rhs.items() if rhs.has(p)]
        p_rhs = unrolled.rhs[factors[1].num]
        head = collapsed_loss(unrolled.rhs[factors[0].num], p_rhs, p)
        # as the program assumes: p read by the loss alone, p not a state, and its argument a named node y
        # (the factor dp/dy is the one the collapse replaces; softmax(V h) keeps dJ/dp and dp/dh apart)
        states = {s.name for s in unrolled.cell.states}
        if (
            head is not None
            and users == [factors[0].num]
            and p_rhs.arg == unrolled.symbols[factors[1].den]
            and naming.split(factors[1].num)[0] not in states
        ):
            return head, 2
    return None, 0


def row_product(unrolled: Graph, factors: tuple[Factor, ...]) -> sp.Basic:
    """The ordered product of the factors' matrices (all but a final ``Outer`` or sum of them)."""
    head, skip = collapsed_head(unrolled, factors)
    mats = [head] if head is not None else []
    mats += [factor_matrix(unrolled, f) for f in factors[skip:]]
    if not mats:  # J_t itself: d J_t / d J_t
        return sp.Identity(1)
    return mul(*mats)


def term_gradient(unrolled: Graph, term: Term) -> sp.Basic:
    """The term as a matrix of the shape of what it differentiates."""
    last = factor_matrix(unrolled, term.factors[-1])
    if outer_terms(last):
        return contract(last, transpose(row_product(unrolled, term.factors[:-1])))
    return transpose(row_product(unrolled, term.factors))
