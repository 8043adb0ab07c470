"""The elementwise functions of the spec language: one record each, read by every stage.

A record holds everything the package knows of one function f applied entry by entry:

- ``name``: the spec's word (``tanh``), and ``latex``: how the document writes f, a command
  put before the argument in parentheses (``\\tanh``), or a form with ``#`` where the argument
  goes (``\\sqrt{#}``);
- ``slope(a, out)``: the vector f'(a), from the argument a and the output out = f(a)
  (autograd's ``defvjp`` takes ``ans`` for the same reason: tanh' = 1 - out∘out); the
  rule table builds d f(a)/dw = diag(f'(a)) da/dw from it.  None for the identity;
- ``ufunc`` (NumPy's own spelling, which writes into ``out=``) or ``helper`` (a function
  the generated module defines, by its source, so the module imports only NumPy);
- ``torch`` and ``jax``: the PyTorch and JAX modules' spellings (``torch.sigmoid``,
  ``jax.nn.sigmoid``; a name starting with ``_`` is a helper of that target's template);
- ``scalar``: f on one SymPy scalar, for the exact oracle, which differentiates it
  itself: no check borrows ``slope``;
- ``numeric``: f on NumPy arrays, analytic for the complex step (``bptt flow``).

Each record becomes an ``Elementwise`` expression class (``Tanh``); ``ACTIVATIONS``
maps the spec's words to them.  Adding a function is one record here, and its row in
tests/derivation/test_rules.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.str import StrPrinter

from derive.ir.exprs import Elementwise, Hadamard, add, mul, neg

Array = Any  # a NumPy array, real or complex


@dataclass(frozen=True)
class Activation:
    """One elementwise function; see the module docstring for each field."""

    name: str
    cls_name: str  # the expression class's name: a printer dispatches on it, so none of SymPy's
    latex: str
    slope: Callable[[sp.Basic, sp.Basic], sp.Basic] | None
    scalar: Callable[[sp.Expr], sp.Expr]
    numeric: Callable[[Array], Array]
    ufunc: str | None = None
    helper: Callable[[Array], Array] | None = None
    torch: str | None = None  # the PyTorch module's call (a helper of its template where it starts with _)
    jax: str | None = None  # the JAX module's call
    spec: bool = True  # written in a spec; ``step`` exists only as relu's derivative, ``reciprocal`` as a / b's
    positive: bool = False  # defined for a > 0 only (log, sqrt; reciprocal for a != 0): tests draw a > 0

    def helper_source(self) -> str:
        """The helper's source, for the generated module to define it."""
        if self.helper is None:
            raise ValueError(f"{self.name} has no helper: NumPy spells it {self.ufunc}")
        return inspect.getsource(self.helper)

    @property
    def calls(self) -> dict[str, str]:
        """The frameworks' spellings of f, by target: ``{"torch": "torch.tanh", "jax": "jnp.tanh"}``."""
        return {name: call for name, call in (("torch", self.torch), ("jax", self.jax)) if call is not None}

    @property
    def code(self) -> str | None:
        """The NumPy call the generated code spells f with; None for the identity."""
        return self.ufunc or (self.helper.__name__ if self.helper else None)


# ---- the helpers a generated module defines (their source is copied into it) ------------


def _sigmoid(a, out=None):
    """1 / (1 + exp(-a)) as exp(min(a, 0)) / (1 + exp(-|a|)), without overflow for large |a|; into
    ``out`` if given (which may be ``a``)."""
    e = np.exp(np.negative(np.abs(a)))
    out = np.minimum(a, 0, out=out)
    np.exp(out, out=out)
    e += 1
    return np.divide(out, e, out=out)


def _relu(a, out=None):
    return np.maximum(a, 0, out=out)


def _step(a, out=None):
    """1 where a > 0, else 0: the derivative of relu (0 at a = 0); into ``out`` if given."""
    if out is None:
        return (a > 0).astype(a.dtype)
    return np.greater(a, 0, out=out)


def _softplus(a, out=None):
    """log(1 + exp(a)), without overflow for large a; into ``out`` if given."""
    return np.logaddexp(0, a, out=out)


def _log_sigmoid(a, out=None):
    """log(sigmoid(a)) = -log(1 + exp(-a)), without overflow for large |a|; into ``out`` if given."""
    out = np.negative(a, out=out)
    np.logaddexp(0, out, out=out)
    return np.negative(out, out=out)


# ---- complex-step-safe forms for the numeric evaluator ------------------------------------


def _sigmoid_analytic(a: Array) -> Array:
    """1 / (1 + exp(-a)) as (1 + tanh(a / 2)) / 2: no overflow, and analytic for the complex step."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _relu_analytic(a: Array) -> Array:
    return np.where(a.real > 0, a, 0.0)


def _step_analytic(a: Array) -> Array:
    return np.where(a.real > 0, 1.0, 0.0)


def _softplus_analytic(a: Array) -> Array:
    """log(1 + exp(a)) as max(a, 0) + log(1 + exp(-|a|)), each piece analytic: no overflow."""
    positive = a.real > 0
    return np.where(positive, a, 0.0) + np.log1p(np.exp(np.where(positive, -a, a)))


def _log_sigmoid_analytic(a: Array) -> Array:
    return -_softplus_analytic(-a)


def _one_minus(v: sp.Basic) -> sp.Basic:
    return add(sp.OneMatrix(*v.shape), neg(v))


RECORDS = (
    Activation(
        "tanh",
        "Tanh",
        r"\tanh",
        slope=lambda a, h: _one_minus(sp.HadamardPower(h, 2)),  # 1 - h∘h
        scalar=sp.tanh,
        numeric=np.tanh,
        ufunc="np.tanh",
        torch="torch.tanh",
        jax="jnp.tanh",
    ),
    Activation(
        "sigmoid",
        "Sigmoid",
        r"\sigma",
        slope=lambda a, s: Hadamard(s, _one_minus(s)),  # s∘(1 - s)
        scalar=lambda v: 1 / (1 + sp.exp(-v)),
        numeric=_sigmoid_analytic,
        helper=_sigmoid,
        torch="torch.sigmoid",
        jax="jax.nn.sigmoid",
    ),
    Activation(
        "relu",
        "Relu",
        r"\operatorname{relu}",
        slope=lambda a, out: ACTIVATIONS_ALL["step"](a),  # step(a), 0 at a = 0
        scalar=lambda v: sp.Max(v, 0),
        numeric=_relu_analytic,
        helper=_relu,
        torch="torch.relu",
        jax="jax.nn.relu",
    ),
    Activation(
        "exp",
        "Exp",
        r"\exp",
        slope=lambda a, e: e,
        scalar=sp.exp,
        numeric=np.exp,
        ufunc="np.exp",
        torch="torch.exp",
        jax="jnp.exp",
    ),
    Activation("identity", "Ident", r"\operatorname{id}", slope=None, scalar=lambda v: v, numeric=lambda a: a),
    Activation(
        "softplus",
        "Softplus",
        r"\operatorname{softplus}",
        slope=lambda a, out: ACTIVATIONS_ALL["sigmoid"](a),  # sigma(a)
        scalar=lambda v: sp.log(1 + sp.exp(v)),
        numeric=_softplus_analytic,
        helper=_softplus,
        torch="torch.nn.functional.softplus",
        jax="jax.nn.softplus",
    ),
    Activation(
        "log",
        "Logarithm",
        r"\log",
        slope=lambda a, out: ACTIVATIONS_ALL["reciprocal"](a),  # 1 / a
        scalar=sp.log,
        numeric=np.log,
        ufunc="np.log",
        positive=True,
        torch="torch.log",
        jax="jnp.log",
    ),
    Activation(
        "sqrt",
        "SquareRoot",
        r"\sqrt{#}",
        slope=lambda a, out: mul(sp.Rational(1, 2), ACTIVATIONS_ALL["reciprocal"](out)),  # 1 / (2 sqrt(a))
        scalar=sp.sqrt,
        numeric=np.sqrt,
        ufunc="np.sqrt",
        positive=True,
        torch="torch.sqrt",
        jax="jnp.sqrt",
    ),
    Activation(
        "reciprocal",
        "Reciprocal",
        r"\left(#\right)^{\circ -1}",
        slope=lambda a, out: neg(sp.HadamardPower(out, 2)),  # -1 / a^2
        scalar=lambda v: 1 / v,
        numeric=np.reciprocal,
        ufunc="np.reciprocal",
        spec=False,
        positive=True,
        torch="torch.reciprocal",
        jax="jnp.reciprocal",
    ),
    Activation(
        "log_sigmoid",
        "LogSigmoid",
        r"\log\sigma",
        slope=lambda a, out: ACTIVATIONS_ALL["sigmoid"](neg(a)),  # sigma(-a) = 1 - sigma(a)
        scalar=lambda v: -sp.log(1 + sp.exp(-v)),
        numeric=_log_sigmoid_analytic,
        helper=_log_sigmoid,
        spec=False,
        torch="torch.nn.functional.logsigmoid",
        jax="jax.nn.log_sigmoid",
    ),
    Activation(
        "step",
        "Step",
        r"\operatorname{step}",
        slope=lambda a, out: sp.ZeroMatrix(*a.shape),
        scalar=lambda v: sp.Heaviside(v, 0),
        numeric=_step_analytic,
        helper=_step,
        spec=False,
        torch="_step",
        jax="_step",
    ),
)

_PRINTERS = (StrPrinter, LatexPrinter, NumPyPrinter)


def _expression_class(op: Activation) -> type[Elementwise]:
    """The expression class of one record; its name must not be one SymPy's printers know."""
    taken = [p.__name__ for p in _PRINTERS if hasattr(p, f"_print_{op.cls_name}")]
    if taken:
        raise TypeError(f"{op.name}: the class name {op.cls_name!r} is one {taken[0]} prints already")
    doc = f"{op.name}(a), elementwise."
    return type(op.cls_name, (Elementwise,), {"op": op, "__doc__": doc, "__module__": __name__})


ACTIVATIONS_ALL: dict[str, type[Elementwise]] = {op.name: _expression_class(op) for op in RECORDS}
ACTIVATIONS: dict[str, type[Elementwise]] = {op.name: ACTIVATIONS_ALL[op.name] for op in RECORDS if op.spec}
HELPERS = tuple(op for op in RECORDS if op.helper is not None)

Tanh = ACTIVATIONS_ALL["tanh"]
Sigmoid = ACTIVATIONS_ALL["sigmoid"]
Relu = ACTIVATIONS_ALL["relu"]
Exp = ACTIVATIONS_ALL["exp"]
Log = ACTIVATIONS_ALL["log"]
Reciprocal = ACTIVATIONS_ALL["reciprocal"]
LogSigmoid = ACTIVATIONS_ALL["log_sigmoid"]
Softplus = ACTIVATIONS_ALL["softplus"]
Ident = ACTIVATIONS_ALL["identity"]
Step = ACTIVATIONS_ALL["step"]
