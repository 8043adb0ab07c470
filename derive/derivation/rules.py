"""Stage 4: the table of local derivative rules, one entry per operator.

``jacobian(rhs, wrt, out)`` returns d out / d wrt for ``out = rhs`` in numerator
layout (rows follow ``out``, columns follow ``wrt``), built from one rule per
expression class, registered with ``@rule``.  The rules read like the maths:

    f elementwise: d f(a)/da           = diag(f'(a)), f' from the record in ``ops``:
                   tanh 1 - h∘h, sigmoid s∘(1 - s), relu step(a), exp e, softplus sigma(a);  identity: I
    a ∘ b:         d(a ∘ b)            = diag(b) da + diag(a) db
    squared_error: d(1/2 |y - r|^2)/dy = (y - r)^T
    softmax:       d softmax(a)/da     = diag(p) - p p^T
    cross_entropy: d(-l^T log p)/dp    = -l^T diag(p^{∘-1})
    W v:           d(W v)/dv = W,  d(W v)/dW = Outer(v): g^T -> g v^T  (and (g^T L)^T v^T inside f)
    W^T v:         d(W^T v)/dv = W^T,  d(W^T v)/dW = Outer(v, transposed): g^T -> v g^T
    W in several places (W x + W a, tanh(W x) ∘ W a, V V h, E^T E x): the sum of the places' Outer maps

The same table serves the LaTeX and the NumPy emitters, and the efficient
program (``adjoint``) uses its transposes as vector-Jacobian products.  An
operator with no rule raises ``NotImplementedError`` naming it.  A table is a
value (``Rules``): ``RULES`` is the one the derivation uses, and ``bptt check``
derives deliberately wrong programs from modified copies it passes in
(``RULES.without_slopes()``, or one application's: ``RULES.without_slopes(tanh(c_t))``), never by
changing this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import sympy as sp
from sympy import HadamardPower, Identity, MatrixSymbol

from derive.ir.exprs import (
    BinaryCrossEntropy,
    CrossEntropy,
    Diag,
    Elementwise,
    Hadamard,
    LogSoftmax,
    Outer,
    Softmax,
    SquaredError,
    Sum,
    add,
    is_scalar,
    mul,
    neg,
    outer_terms,
    scaled,
    transpose,
)
from derive.ir.ops import Exp, Reciprocal, Sigmoid

Rule = Callable[[sp.Basic, MatrixSymbol, "sp.Basic | None", "Rules"], sp.Basic]
_TABLE: dict[type, Rule] = {}


def rule(op: type) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        _TABLE[op] = fn
        return fn

    return register


def op_name(expr: sp.Basic) -> str:
    return type(expr).__name__


@dataclass(frozen=True)
class Rules:
    """A table of rules by expression class, looked up along the class's MRO."""

    table: Mapping[type, Rule]

    def jacobian(self, rhs: sp.Basic, wrt: MatrixSymbol, out: sp.Basic | None = None) -> sp.Basic:
        """d rhs / d wrt.  ``out`` names the value of ``rhs`` (h_t for tanh(z_t)), if it has one."""
        if rhs == wrt:
            return Identity(wrt.shape[0])
        if not rhs.has(wrt):
            raise ValueError(f"{rhs} does not depend on {wrt}")
        for op in type(rhs).__mro__:
            if op in self.table:
                return self.table[op](rhs, wrt, out, self)
        raise NotImplementedError(f"no rule for {op_name(rhs)}")

    def chain(self, outer: sp.Basic, inner_rhs: sp.Basic, wrt: MatrixSymbol) -> sp.Basic:
        """outer * d inner_rhs / d wrt, without a multiplication by the identity."""
        inner = self.jacobian(inner_rhs, wrt)
        if outer_terms(inner):  # W v inside another operation: its Jacobian joins each place's L
            return add(*[o.after(outer) for o in outer_terms(inner)])
        return mul(outer, inner)

    def replaced(self, op: type, fn: Rule) -> Rules:
        """A copy with ``op``'s rule replaced."""
        return Rules(MappingProxyType({**self.table, op: fn}))

    def without_slopes(self, of: sp.Basic | None = None) -> Rules:
        """Every elementwise function's derivative left out, d f(a)/dw = da/dw, or, with ``of``, only
        that application's (tanh(c_t) in h_t = o_t ∘ tanh(c_t)): a mistake, on purpose."""
        keep = self.table[Elementwise]

        def dropped(rhs: Elementwise, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
            if of is None or rhs == of:
                return rules.jacobian(rhs.arg, wrt)
            return keep(rhs, wrt, out, rules)

        return self.replaced(Elementwise, dropped)


def jacobian(rhs: sp.Basic, wrt: MatrixSymbol, out: sp.Basic | None = None) -> sp.Basic:
    """d rhs / d wrt by the derivation's table, ``RULES``."""
    return RULES.jacobian(rhs, wrt, out)


def _summed(parts: list[sp.Basic]) -> sp.Basic:
    """The parts' sum; a weight's Outer maps in one flat sum, one per place it enters."""
    return add(*[o for p in parts for o in (outer_terms(p) or (p,))])


@rule(sp.MatAdd)
def _add(rhs: sp.MatAdd, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    return _summed([rules.jacobian(arg, wrt) for arg in rhs.args if arg.has(wrt)])


@rule(sp.MatMul)
def _matmul(rhs: sp.MatMul, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """c W v: d/dv = c W; d/dW = Outer(c v); c v (a scaling): d/dv = c I.  A chain V A h is
    V (A h), as the spec reads it: d/dV = Outer(A h), and the rest through A h; V V h adds both.
    c W^T v: d/dW = Outer(v, transposed) with L = c I."""
    coeffs = [a for a in rhs.args if is_scalar(a)]
    mats = [a for a in rhs.args if not is_scalar(a)]
    c = sp.Mul(*coeffs) if coeffs else sp.S.One
    if len(mats) == 1:
        inner = rules.jacobian(mats[0], wrt)
        if outer_terms(inner):
            return _summed([o.after(c) for o in outer_terms(inner)])
        return mul(c, inner)
    left, right = mats[0], mul(*mats[1:])
    parts = []
    if left in (wrt, sp.Transpose(wrt)):  # W v or W^T v: the place where W itself multiplies
        transposed = left != wrt
        rows = wrt.shape[1] if transposed else wrt.shape[0]
        parts.append(Outer(right, wrt, None if c == 1 else mul(c, sp.Identity(rows)), transposed))
    if right.has(wrt):
        parts.append(rules.chain(mul(c, left), right, wrt))
    return _summed(parts)


@rule(Hadamard)
def _hadamard(rhs: Hadamard, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d(a ∘ b) = diag(b) da + diag(a) db."""
    a, b = rhs.args
    return _summed([rules.chain(Diag(other), arg, wrt) for arg, other in ((a, b), (b, a)) if arg.has(wrt)])


@rule(Elementwise)
def _elementwise(rhs: Elementwise, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d f(a)/dw = diag(f'(a)) da/dw, with f' from the function's record (``ops``); the identity's is da/dw."""
    if rhs.op.slope is None:
        return rules.jacobian(rhs.arg, wrt)
    slope = rhs.op.slope(rhs.arg, out if out is not None else rhs)
    return rules.chain(Diag(slope), rhs.arg, wrt)


@rule(SquaredError)
def _squared_error(rhs: SquaredError, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d(1/2 |y - r|^2)/dy = (y - r)^T."""
    if rhs.target.has(wrt):
        raise NotImplementedError("squared_error is not differentiated with respect to its target")
    return rules.chain(transpose(add(rhs.y, neg(rhs.target))), rhs.y, wrt)


@rule(Softmax)
def _softmax(rhs: Softmax, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    p = out if out is not None else rhs
    return rules.chain(add(Diag(p), neg(mul(p, transpose(p)))), rhs.arg, wrt)


@rule(CrossEntropy)
def _cross_entropy(rhs: CrossEntropy, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    if rhs.target.has(wrt):
        raise NotImplementedError("cross_entropy is not differentiated with respect to its target")
    if isinstance(rhs.p, Softmax):  # cross_entropy(softmax(y), l): the collapse, d/dy = (softmax(y) - l)^T
        return rules.chain(transpose(add(rhs.p, neg(rhs.target))), rhs.p.arg, wrt)
    return rules.chain(neg(mul(transpose(rhs.target), Diag(HadamardPower(rhs.p, -1)))), rhs.p, wrt)


@rule(BinaryCrossEntropy)
def _binary_cross_entropy(rhs: BinaryCrossEntropy, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d/dp = ((p - r) ⊘ (p ∘ (1 - p)))^T; of sigmoid(y), the collapse d/dy = (sigmoid(y) - r)^T."""
    if rhs.target.has(wrt):
        raise NotImplementedError("binary_cross_entropy is not differentiated with respect to its target")
    if isinstance(rhs.p, Sigmoid):
        return rules.chain(transpose(add(rhs.p, neg(rhs.target))), rhs.p.arg, wrt)
    spread = Hadamard(rhs.p, add(sp.OneMatrix(*rhs.p.shape), neg(rhs.p)))
    slope = Hadamard(add(rhs.p, neg(rhs.target)), Reciprocal(spread))
    return rules.chain(transpose(slope), rhs.p, wrt)


@rule(Sum)
def _sum(rhs: Sum, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d(1^T v) = 1^T dv."""
    return rules.chain(transpose(sp.OneMatrix(*rhs.arg.shape)), rhs.arg, wrt)


@rule(LogSoftmax)
def _log_softmax(rhs: LogSoftmax, wrt: MatrixSymbol, out: sp.Basic | None, rules: Rules) -> sp.Basic:
    """d log softmax(a)/da = I - 1 p^T, with p = softmax(a) = exp(out): no division by p."""
    p = Exp(out) if out is not None else Softmax(rhs.arg)
    n = rhs.arg.shape[0]
    return rules.chain(add(sp.Identity(n), neg(mul(sp.OneMatrix(n, 1), transpose(p)))), rhs.arg, wrt)


RULES = Rules(MappingProxyType(_TABLE))  # the derivation's table


def collapsed_loss(loss_rhs: sp.Basic, p_rhs: sp.Basic, p: MatrixSymbol) -> sp.Basic | None:
    """dJ/dp dp/dy collapsed to (p - target)^T: for cross_entropy(p, l) of p = softmax(y), and for
    binary_cross_entropy(p, r) of p = sigmoid(y) (r^T diag(p)^{-1} ... = p - r entry by entry); of a
    weighted sum of losses, c (p - target)^T for its one term c L(p, target) that reads p.  None for
    any other loss, or where another term reads p too."""
    terms = loss_rhs.args if isinstance(loss_rhs, sp.MatAdd) else (loss_rhs,)
    reading = [term for term in terms if term.has(p)]
    if len(reading) != 1:
        return None
    coeff, inner = scaled(reading[0])
    if not isinstance(inner, (CrossEntropy, BinaryCrossEntropy)) or inner.p != p:
        return None
    if isinstance(inner, BinaryCrossEntropy) and isinstance(p_rhs, Sigmoid):
        head = transpose(add(inner.p, neg(inner.target)))
    else:
        head = softmax_cross_entropy(inner, p_rhs)
    return None if head is None else mul(coeff, head)


def softmax_cross_entropy(loss_rhs: sp.Basic, p_rhs: sp.Basic) -> sp.Basic | None:
    """dJ/dp dp/dy collapsed to (p - l)^T when J = cross_entropy(p, l) and p = softmax(y).

    -l^T diag(p)^{-1} (diag(p) - p p^T) = -l^T + (l^T 1) p^T = (p - l)^T, since the
    one-hot l sums to 1.  Returns None when the pair is not softmax + cross-entropy.
    """
    if isinstance(loss_rhs, CrossEntropy) and isinstance(p_rhs, Softmax):
        return transpose(add(loss_rhs.p, neg(loss_rhs.target)))
    return None
