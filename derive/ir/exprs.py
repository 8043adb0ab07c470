"""SymPy expression classes for the operators a cell is written in.

Vectors are column ``MatrixSymbol``s (see ``naming``); the classes here add what
SymPy's matrix algebra lacks: elementwise activations, softmax and losses.  Each
is a ``MatrixExpr`` with a known shape, so the unrolled equations stay symbolic in
the dimensions.  Printers (``printing``) give each class its LaTeX and NumPy
spelling; ``rules`` gives each its local derivative.  The elementwise functions
themselves (tanh, sigmoid, ...) are records in ``ops``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

if TYPE_CHECKING:
    from derive.ir.ops import Activation


class Constant(sp.Expr):
    """A named number of the spec (``alpha = 0.3``): a commutative scalar that prints by its name
    in the document and by its value in code.  Its value is one of its arguments, so two cells'
    constants of one name but different values are different expressions."""

    is_commutative = True
    is_real = True

    def __new__(cls, name: str | sp.Symbol, value: sp.Rational) -> Constant:
        # SymPy rebuilds an expression as func(*args): the name comes back as its Symbol
        return super().__new__(cls, name if isinstance(name, sp.Symbol) else sp.Symbol(name), sp.Rational(value))

    @property
    def name(self) -> str:
        return self.args[0].name

    @property
    def value(self) -> sp.Rational:
        return self.args[1]

    def _eval_is_positive(self) -> bool:
        return bool(self.value > 0)

    def _eval_is_negative(self) -> bool:
        return bool(self.value < 0)

    def _eval_is_zero(self) -> bool:
        return bool(self.value == 0)


def is_scalar(expr: sp.Basic) -> bool:
    """A number, a constant, or an expression of them: a coefficient in a product, never a factor."""
    return not getattr(expr, "is_Matrix", False)


def scaled(expr: sp.Basic) -> tuple[sp.Expr, sp.Basic]:
    """(c, M) for a product c M whose first factor is a number or constant; (1, expr) otherwise."""
    if isinstance(expr, sp.MatMul) and is_scalar(expr.args[0]):
        return expr.args[0], mul(*expr.args[1:])
    return sp.S.One, expr


def valued(expr: sp.Basic) -> sp.Basic:
    """``expr`` with every constant replaced by its value (for code and the numeric checks)."""
    found = expr.atoms(Constant)
    return expr.xreplace({c: c.value for c in found}) if found else expr


class Elementwise(MatrixExpr):
    """f applied to every entry of a column vector; the shape is the argument's.  Each function is a
    subclass made from its record in ``ops`` (``Tanh``), which ``op`` holds."""

    op: ClassVar[Activation]

    def __new__(cls, arg: MatrixExpr) -> Elementwise:
        arg = sp.sympify(arg)
        if not getattr(arg, "is_Matrix", False) or arg.shape[1] != 1:
            raise TypeError(f"{cls.__name__} takes a column vector, got {arg!r}")
        return super().__new__(cls, arg)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape


class Hadamard(MatrixExpr):
    """a ∘ b, the elementwise product of two vectors of one shape."""

    def __new__(cls, a: MatrixExpr, b: MatrixExpr) -> Hadamard:
        a, b = sp.sympify(a), sp.sympify(b)
        if a.shape != b.shape:
            raise TypeError(f"elementwise product of shapes {a.shape} and {b.shape}")
        return super().__new__(cls, a, b)

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.args[0].shape


class Softmax(MatrixExpr):
    """softmax(y) = exp(y) / sum(exp(y)), a vector of the shape of y."""

    def __new__(cls, arg: MatrixExpr) -> Softmax:
        return super().__new__(cls, sp.sympify(arg))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape


class Loss(MatrixExpr):
    """A 1 x 1 loss of a prediction and a target vector of the same shape."""

    spec_name = ""

    def __new__(cls, prediction: MatrixExpr, target: MatrixExpr) -> Loss:
        prediction, target = sp.sympify(prediction), sp.sympify(target)
        if prediction.shape != target.shape:
            raise TypeError(f"{cls.spec_name} of shapes {prediction.shape} and {target.shape}")
        return super().__new__(cls, prediction, target)

    @property
    def target(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (sp.S.One, sp.S.One)


class CrossEntropy(Loss):
    """-l^T log(p) for a probability vector p and a one-hot target l."""

    spec_name = "cross_entropy"

    @property
    def p(self) -> MatrixExpr:
        return self.args[0]


class SquaredError(Loss):
    """(1/2) |y - r|^2 for a prediction y and a real target r."""

    spec_name = "squared_error"

    @property
    def y(self) -> MatrixExpr:
        return self.args[0]


class BinaryCrossEntropy(Loss):
    """-(r^T log p + (1 - r)^T log(1 - p)) for probabilities p and a real target r in [0, 1]."""

    spec_name = "binary_cross_entropy"

    @property
    def p(self) -> MatrixExpr:
        return self.args[0]


class Sum(Loss):
    """sum(v) = 1^T v, the sum of a vector's entries: a loss of any vector expression (Poisson's
    sum(exp(y) - r * y), soft targets' -sum(q * log(p)))."""

    spec_name = "sum"

    def __new__(cls, arg: MatrixExpr) -> Sum:
        arg = sp.sympify(arg)
        if not getattr(arg, "is_Matrix", False) or arg.shape[1] != 1:
            raise TypeError(f"sum takes a column vector, got {arg!r}")
        return MatrixExpr.__new__(cls, arg)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]


class LogSoftmax(MatrixExpr):
    """log(softmax(a)) = a - log(sum(exp(a))), as one operation: computed stably, and differentiated
    without dividing by a probability that may underflow."""

    def __new__(cls, arg: MatrixExpr) -> LogSoftmax:
        return super().__new__(cls, sp.sympify(arg))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape


LOSSES = {
    "cross_entropy": CrossEntropy,
    "squared_error": SquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
}


class Outer(MatrixExpr):
    """The local derivative of an expression in W v with respect to W, as the map g^T -> (g^T L)^T v^T.

    d(W v)/dW is a third-order tensor; contracted with the row vector g^T that the
    chain rule brings from the left, it gives the outer product g v^T, which has the
    shape of W.  When W v sits inside another operation (sigma(W v + b)), that
    operation's Jacobian L comes between: g^T -> (g^T L)^T v^T.  ``Outer(v, W, L)``
    stands for that map in a chain of factors; L is the identity for a bare W v.
    ``transposed`` marks W^T v (a tied weight): g^T L W^T v = v^T W (L^T g), so the map is
    g^T -> v (g^T L), the transpose of the other, still of the shape of W.  A weight that
    enters an expression in several places has the sum of their maps (``outer_terms``).
    """

    def __new__(
        cls, right: MatrixExpr, param: MatrixExpr, left: MatrixExpr | None = None, transposed: bool = False
    ) -> Outer:
        right, param = sp.sympify(right), sp.sympify(param)
        left = sp.Identity(param.shape[0] if not transposed else param.shape[1]) if left is None else sp.sympify(left)
        return super().__new__(cls, right, param, left, sp.true if transposed else sp.false)

    @property
    def right(self) -> MatrixExpr:
        return self.args[0]

    @property
    def param(self) -> MatrixExpr:
        return self.args[1]

    @property
    def left(self) -> MatrixExpr:
        """The Jacobian between the node and W v (the identity for a bare W v)."""
        return self.args[2]

    @property
    def transposed(self) -> bool:
        """Whether the weight enters as W^T v."""
        return bool(self.args[3])

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.param.shape

    def after(self, outer: MatrixExpr) -> Outer:
        """The map with a Jacobian ``outer`` applied after it: L becomes outer L."""
        return Outer(self.right, self.param, mul(outer, self.left), self.transposed)

    def contract(self, g: MatrixExpr) -> MatrixExpr:
        """The gradient for an upstream column vector g (the node's delta): L^T g v^T (v g^T L for W^T v)."""
        if self.transposed:
            return mul(self.right, transpose(g), self.left)
        return mul(transpose(self.left), g, transpose(self.right))


def outer_terms(jacobian: sp.Basic) -> tuple[Outer, ...]:
    """The ``Outer`` maps a weight's Jacobian sums, one per place it enters (W x + W a: two);
    () for an ordinary Jacobian (with respect to a vector)."""
    if isinstance(jacobian, Outer):
        return (jacobian,)
    if isinstance(jacobian, sp.MatAdd) and all(isinstance(a, Outer) for a in jacobian.args):
        return tuple(jacobian.args)
    return ()


def contract(jacobian: sp.Basic, g: MatrixExpr) -> MatrixExpr:
    """A weight's gradient for an upstream g: the sum of its ``Outer`` maps' contractions."""
    return add(*[o.contract(g) for o in outer_terms(jacobian)])


class Diag(MatrixExpr):
    """diag(v): the square matrix with the vector v on its diagonal; its own transpose.

    SymPy's ``DiagMatrix`` consults the assumptions system on every ``doit``,
    which makes expanding long chain-rule products slow; this class is inert.
    """

    def __new__(cls, v: MatrixExpr) -> Diag:
        return super().__new__(cls, sp.sympify(v))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.arg.shape[0], self.arg.shape[0])

    def _eval_transpose(self) -> Diag:
        return self


# ---- inert constructors: SymPy's operators on matrix expressions call doit() ----------


def mul(*factors: sp.Basic) -> sp.Basic:
    """The product of the factors, flattened: numbers first, identities dropped; no simplification."""
    flat: list[sp.Basic] = []
    for f in factors:
        flat.extend(f.args if isinstance(f, sp.MatMul) else (f,))
    numbers = [f for f in flat if is_scalar(f)]
    coeff = sp.Mul(*numbers) if numbers else sp.S.One
    mats = [f for f in flat if not is_scalar(f)]
    kept = [f for f in mats if not isinstance(f, sp.Identity)] or mats[:1]
    while len(kept) >= 2 and isinstance(kept[-2], Diag) and isinstance(kept[-1], sp.OneMatrix):
        kept[-2:] = [kept[-2].arg]  # diag(v) 1 = v: a sum's derivative, 1^T diag(v) transposed
    if not kept:
        raise ValueError("a product needs a matrix factor")
    if coeff != 1:
        return sp.MatMul(coeff, *kept)
    return kept[0] if len(kept) == 1 else sp.MatMul(*kept)


def add(*terms: sp.Basic) -> sp.Basic:
    """The sum of the terms in the order given; no simplification."""
    return terms[0] if len(terms) == 1 else sp.MatAdd(*terms)


def neg(expr: sp.Basic) -> sp.Basic:
    return sp.MatMul(sp.S.NegativeOne, expr)


def transpose(expr: sp.Basic) -> sp.Basic:
    """expr^T with the transpose pushed down to the symbols: (A B)^T = B^T A^T."""
    if isinstance(expr, sp.MatMul):
        coeffs = [a for a in expr.args if is_scalar(a)]
        mats = [transpose(a) for a in reversed(expr.args) if not is_scalar(a)]
        return mul(*coeffs, *mats)
    if isinstance(expr, sp.MatAdd):
        return sp.MatAdd(*[transpose(a) for a in expr.args])
    if isinstance(expr, sp.Transpose):
        return expr.arg
    if is_scalar(expr) or isinstance(expr, (Diag, sp.Identity)):
        return expr
    if isinstance(expr, sp.ZeroMatrix):
        return sp.ZeroMatrix(expr.shape[1], expr.shape[0])
    return sp.Transpose(expr)


class SigmoidBinaryCrossEntropy(Loss):
    """binary_cross_entropy(sigmoid(y), r) computed from the logits y, sum(softplus(y) - r * y), for
    code only."""

    spec_name = "sigmoid_binary_cross_entropy"

    @property
    def logits(self) -> MatrixExpr:
        return self.args[0]


class SoftmaxCrossEntropy(Loss):
    """cross_entropy(softmax(y), l) computed from the logits y (log-sum-exp), for code only."""

    spec_name = "softmax_cross_entropy"

    @property
    def logits(self) -> MatrixExpr:
        return self.args[0]
