"""Stage 4: the table of local derivative rules, one entry per operator.

``jacobian(rhs, wrt, out)`` returns d out / d wrt for ``out = rhs`` in numerator
layout (rows follow ``out``, columns follow ``wrt``), built from one rule per
expression class, registered with ``@rule``.  The rules read like the maths:

    tanh:          d tanh(a)/da        = diag(1 - h∘h)          (h = tanh(a))
    sigmoid:       d sigma(a)/da       = diag(s∘(1 - s))        (s = sigma(a))
    relu, exp:     diag(step(a)), diag(exp(a));   identity: I
    a ∘ b:         d(a ∘ b)            = diag(b) da + diag(a) db
    squared_error: d(1/2 |y - r|^2)/dy = (y - r)^T
    softmax:       d softmax(a)/da     = diag(p) - p p^T
    cross_entropy: d(-l^T log p)/dp    = -l^T diag(p^{∘-1})
    W v:           d(W v)/dv = W,  d(W v)/dW = Outer(v): g^T -> g v^T  (and (g^T L)^T v^T inside f)

The same table serves the LaTeX and the NumPy emitters, and the efficient
program (``adjoint``) uses its transposes as vector-Jacobian products.  An
operator with no rule raises ``NotImplementedError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
from sympy import HadamardPower, Identity, MatrixSymbol, OneMatrix

from .exprs import (
    CrossEntropy,
    Diag,
    Exp,
    Hadamard,
    Ident,
    Outer,
    Relu,
    Sigmoid,
    Softmax,
    SquaredError,
    Step,
    Tanh,
    add,
    mul,
    neg,
    transpose,
)

Rule = Callable[[sp.Basic, MatrixSymbol, "sp.Basic | None"], sp.Basic]
RULES: dict[type, Rule] = {}


def rule(op: type) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[op] = fn
        return fn

    return register


def op_name(expr: sp.Basic) -> str:
    return type(expr).__name__


def jacobian(rhs: sp.Basic, wrt: MatrixSymbol, out: sp.Basic | None = None) -> sp.Basic:
    """d rhs / d wrt.  ``out`` names the value of ``rhs`` (h_t for tanh(z_t)), if it has one."""
    if rhs == wrt:
        return Identity(wrt.shape[0])
    if not rhs.has(wrt):
        raise ValueError(f"{rhs} does not depend on {wrt}")
    for op in type(rhs).__mro__:
        if op in RULES:
            return RULES[op](rhs, wrt, out)
    raise NotImplementedError(f"no rule for {op_name(rhs)}")


def _shown(expr: sp.Basic) -> str:
    """An expression as the comments of generated code write it: tanh(W x_t) ⊙ h_{t-1}."""
    from .printing import text  # printing reads the rule table's classes: import it when needed

    return text(expr)


def chain(outer: sp.Basic, inner_rhs: sp.Basic, wrt: MatrixSymbol) -> sp.Basic:
    """outer * d inner_rhs / d wrt, without a multiplication by the identity."""
    inner = jacobian(inner_rhs, wrt)
    if isinstance(inner, Outer):  # W v inside another operation: its Jacobian joins L
        return Outer(inner.right, inner.param, mul(outer, inner.left))
    return mul(outer, inner)


@rule(sp.MatAdd)
def _add(rhs: sp.MatAdd, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    parts = [jacobian(arg, wrt) for arg in rhs.args if arg.has(wrt)]
    if len(parts) > 1 and any(isinstance(p, Outer) for p in parts):
        raise NotImplementedError(f"{wrt} appears in more than one term of {_shown(rhs)}: name one of the terms")
    return add(*parts)


@rule(sp.MatMul)
def _matmul(rhs: sp.MatMul, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    """c W v: d/dv = c W; d/dW = Outer(c v); c v (a scaling): d/dv = c I.  A chain V A h is
    V (A h), as the spec reads it: d/dV = Outer(A h), and the rest through A h."""
    coeffs = [a for a in rhs.args if a.is_Number]
    mats = [a for a in rhs.args if not a.is_Number]
    c = sp.Mul(*coeffs) if coeffs else sp.S.One
    if len(mats) == 1:
        inner = jacobian(mats[0], wrt)
        if isinstance(inner, Outer):
            return Outer(inner.right, inner.param, mul(c, inner.left))
        return mul(c, inner)
    left, right = mats[0], mul(*mats[1:])
    if left == wrt:
        if right.has(wrt):
            raise NotImplementedError(f"{wrt} appears on both sides of {_shown(rhs)}")
        return Outer(right, wrt, None if c == 1 else mul(c, sp.Identity(wrt.shape[0])))
    return chain(mul(c, left), right, wrt)


@rule(Hadamard)
def _hadamard(rhs: Hadamard, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    """d(a ∘ b) = diag(b) da + diag(a) db."""
    a, b = rhs.args
    parts = [chain(Diag(other), arg, wrt) for arg, other in ((a, b), (b, a)) if arg.has(wrt)]
    if len(parts) > 1 and any(isinstance(p, Outer) for p in parts):
        raise NotImplementedError(f"{wrt} appears in both factors of {_shown(rhs)}: name one of the factors")
    return add(*parts)


@rule(Sigmoid)
def _sigmoid(rhs: Sigmoid, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    s = out if out is not None else rhs
    return chain(Diag(Hadamard(s, add(OneMatrix(*s.shape), neg(s)))), rhs.arg, wrt)


@rule(Relu)
def _relu(rhs: Relu, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    return chain(Diag(Step(rhs.arg)), rhs.arg, wrt)


@rule(Exp)
def _exp(rhs: Exp, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    return chain(Diag(out if out is not None else rhs), rhs.arg, wrt)


@rule(Ident)
def _identity(rhs: Ident, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    return jacobian(rhs.arg, wrt)


@rule(SquaredError)
def _squared_error(rhs: SquaredError, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    """d(1/2 |y - r|^2)/dy = (y - r)^T."""
    if rhs.target.has(wrt):
        raise NotImplementedError("squared_error is not differentiated with respect to its target")
    return chain(transpose(add(rhs.y, neg(rhs.target))), rhs.y, wrt)


@rule(Tanh)
def _tanh(rhs: Tanh, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    h = out if out is not None else rhs
    return chain(Diag(add(OneMatrix(*h.shape), neg(HadamardPower(h, 2)))), rhs.arg, wrt)


@rule(Softmax)
def _softmax(rhs: Softmax, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    p = out if out is not None else rhs
    return chain(add(Diag(p), neg(mul(p, transpose(p)))), rhs.arg, wrt)


@rule(CrossEntropy)
def _cross_entropy(rhs: CrossEntropy, wrt: MatrixSymbol, out: sp.Basic | None) -> sp.Basic:
    if rhs.target.has(wrt):
        raise NotImplementedError("cross_entropy is not differentiated with respect to its target")
    if isinstance(rhs.p, Softmax):  # cross_entropy(softmax(y), l): the collapse, d/dy = (softmax(y) - l)^T
        return chain(transpose(add(rhs.p, neg(rhs.target))), rhs.p.arg, wrt)
    return chain(neg(mul(transpose(rhs.target), Diag(HadamardPower(rhs.p, -1)))), rhs.p, wrt)


def softmax_cross_entropy(loss_rhs: sp.Basic, p_rhs: sp.Basic) -> sp.Basic | None:
    """dJ/dp dp/dy collapsed to (p - l)^T when J = cross_entropy(p, l) and p = softmax(y).

    -l^T diag(p)^{-1} (diag(p) - p p^T) = -l^T + (l^T 1) p^T = (p - l)^T, since the
    one-hot l sums to 1.  Returns None when the pair is not softmax + cross-entropy.
    """
    if isinstance(loss_rhs, CrossEntropy) and isinstance(p_rhs, Softmax):
        return transpose(add(loss_rhs.p, neg(loss_rhs.target)))
    return None
