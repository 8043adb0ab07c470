"""The numeric evaluator: a cell's SymPy expressions evaluated on NumPy arrays, complex-step safe.

``Evaluator`` (and ``evaluate``, for one expression) walks the cell's SymPy expressions; it never
prints code or calls eval, exec or lambdify.  ``bptt flow`` takes its Jacobians by the complex
step through it (``tools.flow.stepper``), so every operation stays analytic: sigmoid(a) = (1 + tanh(a /
2)) / 2, softmax and log-softmax shift by the maximum of the real part, and relu and step branch
on the real part (their derivative is taken as 0 at 0, as in the generated modules).  The
elementwise functions are the ``numeric`` of their records in ``ops``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp

from derive.ir.cell import dim_symbol
from derive.ir.exprs import (
    BinaryCrossEntropy,
    CrossEntropy,
    Diag,
    Elementwise,
    Hadamard,
    LogSoftmax,
    Softmax,
    SoftmaxCrossEntropy,
    SquaredError,
    Sum,
    is_scalar,
    valued,
)
from derive.ir.ops import Sigmoid, Softplus

Array = np.ndarray


def _log_softmax(y: Array) -> Array:
    """log softmax(y) of every column: s - log(sum(exp(s))) with s = y - max(Re y)."""
    s = y - y.real.max(axis=0, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=0, keepdims=True))


def _cross_entropy(logp: Array, target: Array) -> Array:
    """-target^T log p per column (1, B); 0 log 0 counts as 0."""
    with np.errstate(invalid="ignore"):
        terms = np.where(target != 0, target * logp, 0.0)
    return -terms.sum(axis=0, keepdims=True)


def _matmul(a: Array, b: Array) -> Array:
    """a @ b, a complex operand split into its real and imaginary parts: real products only
    (NumPy's complex product of small blocks was 1000 times slower here, in OpenBLAS threads)."""
    if not (np.iscomplexobj(a) or np.iscomplexobj(b)):
        return a @ b
    if not np.iscomplexobj(a):
        return a @ b.real + 1j * (a @ b.imag)
    if not np.iscomplexobj(b):
        return a.real @ b + 1j * (a.imag @ b)
    return a.real @ b.real - a.imag @ b.imag + 1j * (a.real @ b.imag + a.imag @ b.real)


class Evaluator:
    """Evaluates a cell's expressions on NumPy values.

    A vector is an (n, B) array: B columns evaluated at once (B = 1 for one sequence, B = n_s
    for the complex-step Jacobians).  ``sizes`` gives every dimension by name ("h": 32);
    ``probabilities`` maps a node defined as softmax(a) or sigmoid(a) (``"p@t"``) to its definition, so
    that a cross-entropy of it is computed from the logits a, as the generated modules do.
    """

    def __init__(self, sizes: Mapping[str, int], probabilities: Mapping[str, sp.Basic] | None = None) -> None:
        self.sizes = {dim_symbol(d): int(n) for d, n in sizes.items()}
        self.probabilities = dict(probabilities or {})

    def size(self, dim: sp.Basic) -> int:
        if isinstance(dim, sp.Integer):
            return int(dim)
        if dim in self.sizes:
            return self.sizes[dim]
        raise ValueError(f"no size for the dimension {dim}")

    def __call__(self, expr: sp.Basic, env: Mapping[str, Array]) -> Any:
        """The value of ``expr``: an array, or a Python float for a number."""
        if is_scalar(expr):
            return float(valued(expr))
        if isinstance(expr, sp.MatrixSymbol):
            try:
                return env[expr.name]
            except KeyError:
                raise KeyError(f"no value for {expr.name}") from None
        if isinstance(expr, sp.MatAdd):
            total = self(expr.args[0], env)
            for arg in expr.args[1:]:
                total = total + self(arg, env)
            return total
        if isinstance(expr, sp.MatMul):
            return self._product(expr, env)
        if isinstance(expr, sp.Transpose):
            value = self(expr.arg, env)
            if expr.arg.shape[1] == 1 and value.shape[1] != 1:
                raise NotImplementedError(f"the transpose of a vector evaluated on several columns at once: {expr}")
            return value.T
        if isinstance(expr, (Hadamard, sp.HadamardProduct)):
            out = self(expr.args[0], env)
            for arg in expr.args[1:]:
                out = out * self(arg, env)
            return out
        if isinstance(expr, sp.HadamardPower):
            return self(expr.base, env) ** float(expr.exp)
        return self._node(expr, env)

    def _product(self, expr: sp.MatMul, env: Mapping[str, Array]) -> Array:
        """A matrix product: its numbers multiplied into one coefficient, its matrices by ``_matmul``."""
        coeff, out = 1.0, None
        for arg in expr.args:
            value = self(arg, env)
            if isinstance(value, float):
                coeff *= value
            else:
                out = value if out is None else _matmul(out, value)
        if out is None:
            raise NotImplementedError(f"a matrix product of numbers only: {expr}")
        return out if coeff == 1.0 else coeff * out

    def _node(self, expr: sp.Basic, env: Mapping[str, Array]) -> Array:
        """A constant matrix, an elementwise function, a softmax, a loss or a Diag."""
        if isinstance(expr, sp.OneMatrix):
            return np.ones(tuple(self.size(d) for d in expr.shape))
        if isinstance(expr, sp.ZeroMatrix):
            return np.zeros(tuple(self.size(d) for d in expr.shape))
        if isinstance(expr, sp.Identity):
            return np.eye(self.size(expr.shape[0]))
        if isinstance(expr, Elementwise):
            return expr.op.numeric(self(expr.arg, env))
        if isinstance(expr, Softmax):
            return np.exp(_log_softmax(self(expr.arg, env)))
        if isinstance(expr, SoftmaxCrossEntropy):
            return _cross_entropy(_log_softmax(self(expr.logits, env)), self(expr.target, env))
        if isinstance(expr, CrossEntropy):
            return _cross_entropy(self._log_p(expr.p, env), self(expr.target, env))
        if isinstance(expr, SquaredError):
            d = self(expr.y, env) - self(expr.target, env)
            return 0.5 * (d * d).sum(axis=0, keepdims=True)
        if isinstance(expr, LogSoftmax):
            return _log_softmax(self(expr.arg, env))
        if isinstance(expr, Sum):
            return self(expr.arg, env).sum(axis=0, keepdims=True)
        if isinstance(expr, BinaryCrossEntropy):
            return self._binary_cross_entropy(expr, env)
        if isinstance(expr, Diag):
            v = self(expr.arg, env)
            if v.shape[1] != 1:
                raise NotImplementedError("Diag of several columns at once")
            return np.diagflat(v)
        raise NotImplementedError(f"flow: no numeric evaluation for {type(expr).__name__} ({expr})")

    def _binary_cross_entropy(self, expr: BinaryCrossEntropy, env: Mapping[str, Array]) -> Array:
        """-(r log p + (1 - r) log(1 - p)) per column; of sigmoid(y), from the logits: softplus(y) - r y."""
        r = self(expr.target, env)
        p = self._defined(expr.p)
        if isinstance(p, Sigmoid):
            y = self(p.arg, env)
            return (Softplus.op.numeric(y) - r * y).sum(axis=0, keepdims=True)
        p = self(expr.p, env)
        return -(r * np.log(p) + (1 - r) * np.log(1 - p)).sum(axis=0, keepdims=True)

    def _defined(self, p: sp.Basic) -> sp.Basic:
        """p, or for a node p = softmax(a) or sigmoid(a), its definition."""
        return self.probabilities.get(p.name, p) if isinstance(p, sp.MatrixSymbol) else p

    def _log_p(self, p: sp.Basic, env: Mapping[str, Array]) -> Array:
        """log p for a cross-entropy, from the logits when p is a softmax."""
        if isinstance(self._defined(p), Softmax):
            return _log_softmax(self(self._defined(p).arg, env))
        with np.errstate(divide="ignore"):
            return np.log(self(p, env))


def evaluate(expr: sp.Basic, env: Mapping[str, Array], sizes: Mapping[str, int]) -> Any:
    """The value of one cell expression; ``env`` maps symbol names (``"W_hh"``, ``"h@t-1"``) to
    (n, B) arrays (a parameter vector as an (n, 1) column), ``sizes`` every dimension by name."""
    return Evaluator(sizes)(expr, env)
