"""Printers: SymPy printer subclasses that spell the derivation as LaTeX or NumPy.

One ``_print_<Class>`` per expression class, and symbol names from ``naming``;
nothing else in the package builds a maths string.

- ``LatexPrinter``: the document's maths; sums keep the order the cell wrote
  them in (positive terms first), diag(v) g prints as v ⊙ g when ``hadamard``.
- ``ColumnPrinter``: NumPy on column vectors of shape (n, 1), with concrete
  steps as locals (``h_2``): the literal by-definition code.
- ``BatchedPrinter``: NumPy on a batch of row vectors of shape (B, n), steps as
  array indices (``h[t - 1]``): the fast path.  The column-vector maths
  W v becomes ``v @ W.T``, diag(a) g becomes ``a * g``, and the outer product
  g v^T becomes ``g.T @ v``, which also sums it over the batch.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp
from sympy import MatrixSymbol
from sympy.printing.latex import LatexPrinter as _SympyLatex
from sympy.printing.numpy import NumPyPrinter as _SympyNumPy
from sympy.printing.str import StrPrinter as _SympyStr

from derive.derivation.chain import Factor
from derive.ir import naming
from derive.ir.exprs import (
    BinaryCrossEntropy,
    Constant,
    CrossEntropy,
    Diag,
    Elementwise,
    Hadamard,
    LogSoftmax,
    Loss,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    SquaredError,
    Sum,
    is_scalar,
    mul,
    transpose,
    valued,
)
from derive.ir.ops import Reciprocal


def ordered_terms(expr: sp.MatAdd) -> list[sp.Basic]:
    """Positive terms first, each group in the order written."""
    return sorted(expr.args, key=is_negative)


def is_negative(term: sp.Basic) -> bool:
    return isinstance(term, sp.MatMul) and is_scalar(term.args[0]) and bool(term.args[0].as_coeff_Mul()[0] < 0)


def negated(term: sp.Basic) -> sp.Basic:
    """-term for a term with a negative coefficient."""
    coeff, *rest = term.args
    if coeff == -1:
        return rest[0] if len(rest) == 1 else sp.MatMul(*rest)
    return sp.MatMul(-coeff, *rest)


def _untransposed_sum(expr: sp.MatAdd) -> sp.MatAdd | None:
    """a^T + b^T as (a + b) when every term is a transposed symbol, else None."""
    inner = [negated(a) if is_negative(a) else a for a in expr.args]
    if all(isinstance(a, sp.Transpose) and isinstance(a.arg, MatrixSymbol) for a in inner):
        return sp.MatAdd(*[transpose(a) for a in expr.args])
    return None


def _is_reciprocal_diag(expr: sp.Basic) -> bool:
    return isinstance(expr, Diag) and isinstance(expr.arg, sp.HadamardPower) and expr.arg.exp == -1


def _is_vector(expr: sp.Basic) -> bool:
    return expr.shape[1] == 1 and expr.shape[0] != 1


class _SignedSums:
    """The sum and product layout shared by all the printers."""

    def _divided(self, expr: sp.Basic) -> str:
        """A side of a / b: a name or a function call as it is, anything else in parentheses."""
        text = self._print(expr)
        return text if isinstance(expr, (MatrixSymbol, Elementwise, Softmax)) else self._paren(text)

    if TYPE_CHECKING:  # provided by the SymPy printer and the subclass it is mixed into

        def _print(self, expr: sp.Basic) -> str: ...

        def _paren(self, s: str) -> str: ...

    def _print_MatAdd(self, expr: sp.MatAdd) -> str:
        out = ""
        for i, term in enumerate(ordered_terms(expr)):
            if is_negative(term):
                out += (" - " if i else "-") + self._factor(negated(term))
            else:
                out += (" + " if i else "") + self._print(term)
        return out

    def _factor(self, expr: sp.Basic) -> str:
        s = self._print(expr)
        return self._paren(s) if isinstance(expr, sp.MatAdd) else s


class LatexPrinter(_SignedSums, _SympyLatex):
    def __init__(self, hadamard: bool = False) -> None:
        super().__init__()
        self.hadamard = hadamard

    def _print_MatAdd(self, expr: sp.MatAdd) -> str:
        """A sum of transposed vectors prints as the transpose of the sum: (p - l)^T."""
        untransposed = _untransposed_sum(expr)
        if untransposed is not None:
            return rf"{self._paren(super()._print_MatAdd(untransposed))}^{{T}}"
        return super()._print_MatAdd(expr)

    def factor(self, expr: sp.Basic) -> str:
        """expr as one factor of a product: a sum in parentheses, (p - l)^T as it is."""
        if isinstance(expr, sp.MatAdd) and _untransposed_sum(expr) is None:
            return self._paren(self._print(expr))
        return self._print(expr)

    _factor = factor

    def _paren(self, s: str) -> str:
        return rf"\left({s}\right)"

    def scalar(self, coeff: sp.Expr) -> str:
        """A coefficient: a sum of numbers and constants in parentheses, (1 - \\rho) h."""
        return self._paren(self._print(coeff)) if isinstance(coeff, sp.Add) else self._print(coeff)

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return naming.latex_name(expr.name)

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, MatrixSymbol):
            inner = self._paren(inner)
        elif "^" in inner:  # a name with a superscript of its own, \delta^{y}_{t}: one group, or a double superscript
            inner = f"{{{inner}}}"
        return f"{inner}^{{T}}"

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        args = list(expr.args)
        sign = ""
        if is_scalar(args[0]):
            coeff = args.pop(0)
            sign = "-" if coeff == -1 else self.scalar(coeff) + " "
        parts = []
        i = 0
        while i < len(args):
            a = args[i]
            if self.hadamard and isinstance(a, Diag) and i + 1 < len(args) and _is_vector(args[-1]):
                rest = args[i + 1] if i + 2 == len(args) else sp.MatMul(*args[i + 1 :])
                # a ⊙ (M v): the product in parentheses, since ⊙ and juxtaposition have no agreed precedence
                right = self._paren(self._print(rest)) if isinstance(rest, sp.MatMul) else self._factor(rest)
                parts.append(f"{self._factor(a.arg)} \\odot {right}")
                break
            parts.append(self._factor(a))
            i += 1
        return sign + " ".join(parts)

    def _print_Diag(self, expr: Diag) -> str:
        arg = expr.arg
        if isinstance(arg, sp.HadamardPower) and arg.exp == -1:
            return rf"\operatorname{{diag}}\left({self._print(arg.base)}\right)^{{-1}}"
        return rf"\operatorname{{diag}}\left({self._print(arg)}\right)"

    def _print_HadamardPower(self, expr: sp.HadamardPower) -> str:
        if isinstance(expr.base, Reciprocal):  # (a^{∘-1})^{∘2} is a^{∘-2}: one superscript
            return rf"\left({self._print(expr.base.arg)}\right)^{{\circ {self._print(-expr.exp)}}}"
        base = self._print(expr.base)
        if isinstance(expr.base, MatrixSymbol) and "^" in base:  # h_{1}^{(t)}: one group before the power
            base = f"{{{base}}}"
        return rf"{base}^{{\circ {self._print(expr.exp)}}}"

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        return r"\mathbf{1}"

    def _print_Identity(self, expr: sp.Identity) -> str:
        return "I"

    def _print_ZeroMatrix(self, expr: sp.ZeroMatrix) -> str:
        return r"\mathbf{0}"

    def _print_Constant(self, expr: Constant) -> str:
        return naming.latex_base(expr.name)

    def _print_Elementwise(self, expr: Elementwise) -> str:
        if "#" in expr.op.latex:
            return expr.op.latex.replace("#", self._print(expr.arg))
        return rf"{expr.op.latex}\left({self._print(expr.arg)}\right)"

    def _print_Hadamard(self, expr: Hadamard) -> str:
        a, b = expr.args
        if isinstance(b, Reciprocal):  # a / b entry by entry
            return f"{self._divided(a)} \\oslash {self._divided(b.arg)}"
        return " \\odot ".join(self._factor(a) for a in expr.args)

    def _print_SquaredError(self, expr: SquaredError) -> str:
        diff = self._print(sp.MatAdd(expr.y, sp.MatMul(sp.S.NegativeOne, expr.target)))
        return rf"\tfrac{{1}}{{2}} \left\lVert {diff} \right\rVert^{{2}}"

    def _print_Softmax(self, expr: Softmax) -> str:
        return rf"\operatorname{{softmax}}\left({self._print(expr.arg)}\right)"

    def _print_CrossEntropy(self, expr: CrossEntropy) -> str:
        return rf"-{self._print(transpose(expr.target))} \log {self._print(expr.p)}"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy) -> str:
        r, p = self._print(expr.target), self._factor(expr.p)
        rest = rf"\left(\mathbf{{1}} - {r}\right)^{{T}} \log \left(\mathbf{{1}} - {p}\right)"
        return rf"-\left({r}^{{T}} \log {p} + {rest}\right)"

    def _print_Sum(self, expr: Sum) -> str:
        inner = self._print(expr.arg)
        return rf"\mathbf{{1}}^{{T}} {inner if isinstance(expr.arg, MatrixSymbol) else self._paren(inner)}"

    def _print_LogSoftmax(self, expr: LogSoftmax) -> str:
        return rf"\log \operatorname{{softmax}}\left({self._print(expr.arg)}\right)"

    def factors(self, expr: sp.Basic, width: int | None = None) -> tuple[str, list[str]]:
        """(sign, printed factors) of a product, for layouts that break long products.

        With ``width``, a factor wider than that which is a sum comes back as pieces, one
        per term, bracketed by \\Bigl( and \\Bigr) (which, unlike \\left and \\right, may
        sit on different lines), so that a layout can break inside it.
        """
        args = list(expr.args) if isinstance(expr, sp.MatMul) else [expr]
        sign = ""
        if is_scalar(args[0]):
            coeff = args.pop(0)
            sign = "-" if coeff == -1 else self.scalar(coeff) + " "
        out = []
        for a in args:
            text = self._factor(a)
            if width is not None and isinstance(a, sp.MatAdd) and latex_width(text) > width:
                pieces = [piece for i, t in enumerate(ordered_terms(a)) for piece in self._term_pieces(t, i, width)]
                pieces[0], pieces[-1] = rf"\Bigl({pieces[0]}", rf"{pieces[-1]}\Bigr)"
                out.extend(pieces)
            else:
                out.append(text)
        return sign, out

    def _term_pieces(self, term: sp.Basic, i: int, width: int) -> list[str]:
        """The i-th term of a wide sum as pieces a layout may break between: itself, or, a product
        wider than ``width``, its factors; a + before it but the first."""
        text = self._print(term)
        pieces = [text]
        if isinstance(term, sp.MatMul) and latex_width(text) > width:
            sign, parts = self.factors(term, width)
            pieces = [sign + parts[0], *parts[1:]]
        if i and not pieces[0].startswith("-"):
            pieces[0] = f"+ {pieces[0]}"
        return pieces

    def partial(self, factor: Factor) -> str:
        """d num / d den as a fraction: ``\\frac{\\partial z_{3}}{\\partial h_{2}}``."""
        return rf"\frac{{\partial {naming.latex_name(factor.num)}}}{{\partial {naming.latex_name(factor.den)}}}"


def latex_width(text: str) -> int:
    """A rough width of typeset LaTeX, in characters: commands, braces and scripts do not count."""
    text = re.sub(r"\\(tanh|exp|log)\b", r"\1", text)  # a function set upright: as wide as its name
    return len(re.sub(r"\\(left|right|Bigl|Bigr|biggl|biggr)|\\[a-zA-Z]+|[{}^_ ]", "", text))


def latex(expr: sp.Basic, hadamard: bool = False) -> str:
    return LatexPrinter(hadamard=hadamard).doprint(expr)


class TextPrinter(_SignedSums, _SympyStr):
    """Plain-text maths for comments in generated code: ``z_t = W_xh x_t + W_hh h_{t-1}``."""

    def _paren(self, s: str) -> str:
        return f"({s})"

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return naming.text_name(expr.name)

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        inner = self._print(expr.arg)
        return f"{inner}^T" if isinstance(expr.arg, MatrixSymbol) else f"({inner})^T"

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        args = list(expr.args)
        sign = ""
        if is_scalar(args[0]):
            coeff = args.pop(0)
            sign = (
                "-"
                if coeff == -1
                else (f"({self._print(coeff)}) " if isinstance(coeff, sp.Add) else f"{self._print(coeff)} ")
            )
        if len(args) == 2 and isinstance(args[0], Diag) and _is_vector(args[1]):
            return sign + f"{self._factor(args[0].arg)} ⊙ {self._factor(args[1])}"
        return sign + " ".join(self._factor(a) for a in args)

    def _print_Diag(self, expr: Diag) -> str:
        return f"diag({self._print(expr.arg)})"

    def _print_HadamardPower(self, expr: sp.HadamardPower) -> str:
        return f"{self._factor(expr.base)}^{self._print(expr.exp)}"

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        return "1"

    def _print_ZeroMatrix(self, expr: sp.ZeroMatrix) -> str:
        return "0"

    def _print_Constant(self, expr: Constant) -> str:
        return expr.name

    def _print_Elementwise(self, expr: Elementwise) -> str:
        return f"{expr.op.name}({self._print(expr.arg)})"

    def _print_Hadamard(self, expr: Hadamard) -> str:
        a, b = expr.args
        if isinstance(b, Reciprocal):
            return f"{self._divided(a)} / {self._divided(b.arg)}"
        return " ⊙ ".join(self._factor(a) for a in expr.args)

    def _print_SquaredError(self, expr: SquaredError) -> str:
        return f"squared_error({self._print(expr.y)}, {self._print(expr.target)})"

    def _print_Softmax(self, expr: Softmax) -> str:
        return f"softmax({self._print(expr.arg)})"

    def _print_CrossEntropy(self, expr: CrossEntropy) -> str:
        return f"cross_entropy({self._print(expr.p)}, {self._print(expr.target)})"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy) -> str:
        return f"binary_cross_entropy({self._print(expr.p)}, {self._print(expr.target)})"

    def _print_Sum(self, expr: Sum) -> str:
        return f"sum({self._print(expr.arg)})"

    def _print_LogSoftmax(self, expr: LogSoftmax) -> str:
        return f"log(softmax({self._print(expr.arg)}))"


def text(expr: sp.Basic) -> str:
    return TextPrinter().doprint(expr)


def equation_text(lhs: MatrixSymbol, rhs: sp.Basic) -> str:
    """``h_t = tanh(z_t)``; a delay's update says what it keeps rather than ``h_{t-1} = h_{t-1}``:
    ``s_t keeps h_{t-1} for h[t-2] at step t+1``."""
    base, step = naming.split(lhs.name)
    delay = naming.delay_of(base)
    if delay is None or step is None:
        return f"{text(lhs)} = {text(rhs)}"
    source, lag = delay
    return f"s_{step} keeps {text(lhs)} for {source}[t-{lag + 1}] at step {naming.shift(step, 1)}"


class _NumPyBase(_SignedSums, _SympyNumPy):
    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True})

    def _paren(self, s: str) -> str:
        return f"({s})"

    def _print_HadamardPower(self, expr: sp.HadamardPower) -> str:
        if expr.exp == -1:
            return f"1 / {self._factor(expr.base)}"
        return f"{self._factor(expr.base)}**{self._print(expr.exp)}"

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        return "1"

    def _print_ZeroMatrix(self, expr: sp.ZeroMatrix) -> str:
        return "0"

    def _print(self, expr: sp.Basic, **kwargs: object) -> str:
        """A number made of constants (dt / tau, 1 - rate) prints as its one value (1/20, 19/20): the
        module holds no constant by name."""
        if isinstance(expr, sp.Expr) and not expr.is_Matrix and expr.has(Constant):
            expr = valued(expr)
        return super()._print(expr, **kwargs)

    def _print_Elementwise(self, expr: Elementwise) -> str:
        if expr.op.code is None:  # the identity
            return self._print(expr.arg)
        return f"{expr.op.code}({self._print(expr.arg)})"

    def _print_Hadamard(self, expr: Hadamard) -> str:
        return " * ".join(self._factor(a) for a in expr.args)

    def _print_SquaredError(self, expr: SquaredError) -> str:
        return f"_squared_error({self._print(expr.y)}, {self._print(expr.target)})"

    def _print_Softmax(self, expr: Softmax) -> str:
        return f"_softmax({self._print(expr.arg)})"

    def _print_CrossEntropy(self, expr: CrossEntropy) -> str:
        return f"_cross_entropy({self._print(expr.p)}, {self._print(expr.target)})"

    def _print_SoftmaxCrossEntropy(self, expr: SoftmaxCrossEntropy) -> str:
        return f"_softmax_cross_entropy({self._print(expr.logits)}, {self._print(expr.target)})"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy) -> str:
        return f"_binary_cross_entropy({self._print(expr.p)}, {self._print(expr.target)})"

    def _print_SigmoidBinaryCrossEntropy(self, expr: SigmoidBinaryCrossEntropy) -> str:
        return f"_sigmoid_binary_cross_entropy({self._print(expr.logits)}, {self._print(expr.target)})"

    def _print_Sum(self, expr: Sum) -> str:
        """The entries summed, over the batch too: a number."""
        return f"float(np.sum({self._print(expr.arg)}))"

    def _print_LogSoftmax(self, expr: LogSoftmax) -> str:
        return f"_log_softmax({self._print(expr.arg)})"

    def _coefficient(self, args: list[sp.Basic]) -> str:
        if args and is_scalar(args[0]):
            coeff = args.pop(0)
            return "-" if coeff == -1 else f"{self._print(coeff)} * "
        return ""


class ColumnPrinter(_NumPyBase):
    """Literal column-vector NumPy: every product is ``@``, every diag is a matrix."""

    def _factor(self, expr: sp.Basic) -> str:
        """An operand of ``@`` or ``*``: sums, elementwise and scaled products in parentheses."""
        s = self._print(expr)
        scaled = isinstance(expr, sp.MatMul) and is_scalar(expr.args[0])
        return self._paren(s) if isinstance(expr, (sp.MatAdd, Hadamard)) or scaled else s

    def operand(self, expr: sp.Basic) -> str:
        return self._factor(expr)

    def _print_Hadamard(self, expr: Hadamard) -> str:
        return " * ".join(
            self._paren(self._print(a)) if isinstance(a, (sp.MatAdd, sp.MatMul)) else self._print(a) for a in expr.args
        )

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return naming.code_local(expr.name)

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        if isinstance(expr.arg, sp.OneMatrix):
            return self.ones(transpose(expr.arg))
        inner = self._print(expr.arg)
        return f"{inner}.T" if isinstance(expr.arg, MatrixSymbol) else f"({inner}).T"

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        args = list(expr.args)
        sign = self._coefficient(args)
        parts = []
        while args:
            a = args.pop(0)
            if isinstance(a, sp.OneMatrix):
                parts.append(self.ones(a))
            elif isinstance(a, sp.Transpose) and args and _is_reciprocal_diag(args[0]):
                # v^T diag(w)^{-1} = (v / w)^T, with 0 / 0 = 0: a one-hot v ignores the other entries of w
                parts.append(f"_ratio({self._print(a.arg)}, {self._print(args.pop(0).arg.base)}).T")
            else:
                parts.append(self._factor(a))
        return sign + " @ ".join(parts)

    def _print_Diag(self, expr: Diag) -> str:
        return f"np.diagflat({self._print(expr.arg)})"

    def ones(self, expr: sp.OneMatrix) -> str:
        """A vector of ones as a factor of a product (1^T v: a sum), not the 1 a sum broadcasts."""
        return f"np.ones(({', '.join(self._print(n) for n in expr.shape)}))"

    def _print_Identity(self, expr: sp.Identity) -> str:
        return f"np.eye({self._print(expr.shape[0])})"

    def _print_Softmax(self, expr: Softmax) -> str:
        return f"_softmax({self._print(expr.arg)}, axis=0)"

    def _print_LogSoftmax(self, expr: LogSoftmax) -> str:
        return f"_log_softmax({self._print(expr.arg)}, axis=0)"


@dataclass(frozen=True)
class Io:
    """How the fast path holds the inputs and targets: as the caller passed them, step t = 1..T at
    index t - 1 (no copy); a class target as its integer labels; a many-to-one cell's targets with
    no step axis at all."""

    arrays: frozenset[str]  # the spec names of the inputs and targets
    classes: dict[str, str]  # a class target's name: the code of its number of classes (sizes["n_y"])
    last: frozenset[str] = frozenset()  # the targets with no step axis (read at step T)


NO_IO = Io(frozenset(), {})


class BatchedPrinter(_NumPyBase):
    """Row-major NumPy over a batch: vectors are (B, n) arrays, ``h[t - 1]`` and so on.

    ``locals`` maps symbol names to the Python name that holds them in the loop
    body (``dz@t -> dz``); every other stepped symbol prints as an array element,
    an input or target as ``io`` says.  A class target is read as its labels where
    that is all it takes (``class_index``), as a one-hot array (``_onehot``) elsewhere.
    """

    ROWS = "_batch_rows"  # np.arange(B): the row of each label
    LIVE: str | None = None  # the name of the rows a loss sums, where not all
    keep: str | None = None  # the rows of every array by row that an expression reads (``kept``), where not all

    def __init__(self, locals: dict[str, str] | None = None, io: Io = NO_IO) -> None:
        super().__init__()
        self.locals = locals or {}
        self.io = io

    def _factor(self, expr: sp.Basic) -> str:
        """A subtracted term: (A + B) v prints as the sum A v + B v, so it is bracketed as a sum is."""
        text = self._print(expr)
        expanded = isinstance(expr, sp.MatMul) and any(isinstance(a, sp.MatAdd) for a in expr.args)
        return self._paren(text) if isinstance(expr, sp.MatAdd) or expanded else text

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        if expr.name in self.locals:
            return self.locals[expr.name]
        base, step = naming.split(expr.name)
        if base not in self.io.arrays or step is None:
            return naming.code_indexed(expr.name)
        code = self._io_element(base, step)
        if base in self.io.classes:
            return f"_onehot({code}, {self.io.classes[base]}, dtype)"
        return code

    def _io_element(self, base: str, step: str) -> str:
        """An input or target at ``step``: index step - 1 of the caller's array, or the array itself."""
        if base in self.io.last:
            return naming.code_base(base)
        return naming.code_indexed(naming.step_name(base, naming.shift(step, -1)))

    def right_operand(self, expr: sp.Basic) -> str:
        """W in ``rows @ W``."""
        return self.doprint(expr)

    def product(self, left: str, right: str, out: str) -> str:
        """``left @ right`` written into ``out``."""
        return f"np.matmul({left}, {right}, out={out})"

    def scratch_for(self, rows: sp.Expr, level: int) -> str | None:
        """A (B, n) array for an intermediate value, n = ``rows``: none here (NumPy makes its own)."""
        return None

    def class_index(self, expr: sp.Basic) -> tuple[str, str] | None:
        """(labels, rows) of a class target, where ``expr`` is one: ``array[rows, labels]`` reads each
        row's entry at its class."""
        if not isinstance(expr, MatrixSymbol):
            return None
        base, step = naming.split(expr.name)
        if base not in self.io.classes or step is None:
            return None
        return self._io_element(base, step), self.ROWS

    def cross_entropy(self, expr: CrossEntropy | SoftmaxCrossEntropy, out: str | None = None) -> str:
        """The call that computes a cross-entropy (of softmax(logits), also writing it into ``out``)."""
        at = self.class_index(expr.target)
        after = f", {at[0]}, {at[1]}" if at else f", {self._print(expr.target)}"
        into = (f", out={out}" if out else "") + self._live()
        if isinstance(expr, SoftmaxCrossEntropy):
            name = "_softmax_cross_entropy_at" if at else "_softmax_cross_entropy"
            return f"{name}({self._print(expr.logits)}{after}{into})"
        return f"{'_cross_entropy_at' if at else '_cross_entropy'}({self._print(expr.p)}{after}{self._live()})"

    def _print(self, expr: sp.Basic, **kwargs: object) -> str:
        code = super()._print(expr, **kwargs)
        if self.keep and isinstance(expr, MatrixSymbol) and naming.split(expr.name)[1] is not None:
            return f"{code}[{self.keep}]"
        return code

    def kept(self, keep: str) -> BatchedPrinter:
        """This printer reading the rows ``keep`` alone of every array by row (a symbol at a step): a sum
        over the rows of what it prints then sums those rows only.  It shares what this one records."""
        out = copy.copy(self)
        out.keep = keep
        return out

    def _live(self) -> str:
        """A loss helper's last argument: the rows it sums, where not all."""
        return f", live={self.LIVE}" if self.LIVE else ""

    def _print_CrossEntropy(self, expr: CrossEntropy) -> str:
        return self.cross_entropy(expr)

    def _print_SoftmaxCrossEntropy(self, expr: SoftmaxCrossEntropy) -> str:
        return self.cross_entropy(expr)

    def _print_SquaredError(self, expr: SquaredError) -> str:
        return f"_squared_error({self._print(expr.y)}, {self._print(expr.target)}{self._live()})"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy) -> str:
        return f"_binary_cross_entropy({self._print(expr.p)}, {self._print(expr.target)}{self._live()})"

    def _print_SigmoidBinaryCrossEntropy(self, expr: SigmoidBinaryCrossEntropy) -> str:
        return f"_sigmoid_binary_cross_entropy({self._print(expr.logits)}, {self._print(expr.target)}{self._live()})"

    def _print_Sum(self, expr: Sum) -> str:
        """The entries summed over the rows (those that count, with lengths): a number."""
        return f"_total({self._print(expr.arg)}{self._live()})"

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        return f"{self._print(expr.arg)}.T"

    def _operand(self, expr: sp.Basic) -> str:
        """expr as an operand of * or @: names, elements and calls bare, anything else in parentheses."""
        text = self._print(expr)
        atomic = isinstance(expr, (MatrixSymbol, Elementwise, Softmax, sp.OneMatrix)) or (
            isinstance(expr, sp.Transpose) and isinstance(expr.arg, MatrixSymbol)
        )
        return text if atomic else self._paren(text)

    def _print_Hadamard(self, expr: Hadamard) -> str:
        return " * ".join(self._operand(a) for a in expr.args)

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        args = list(expr.args)
        sign = self._coefficient(args)
        if len(args) >= 2 and isinstance(args[-1], sp.Transpose) and _is_vector(args[-1].arg):
            # an outer product (...) v^T: the rows of (...) times those of v, summed over the batch
            left = args[0] if len(args) == 2 else sp.MatMul(*args[:-1])
            return sign + f"{self._operand(left)}.T @ {self._operand(args[-1].arg)}"
        rows = [i for i, a in enumerate(args) if isinstance(a, sp.Transpose) and _is_vector(a.arg)]
        if rows and 0 < rows[-1] < len(args) - 1 and _is_vector(sp.MatMul(*args[rows[-1] :]).T):
            # an outer product (...) (A v)^T = (...) v^T A^T (the gradient of V in V A v): the rows of (...)
            # times those of A v
            left, right = mul(*args[: rows[-1]]), transpose(mul(*args[rows[-1] :]))
            return sign + f"{self._operand(left)}.T @ {self._operand(right)}"
        if len(args) == 1 and isinstance(args[0], Loss):  # a weighted loss: a number per batch, summed
            return sign + self._print(args[0])
        if isinstance(args[-1], sp.MatAdd) and not _is_vector(args[-1]):
            # v (a^T - b^T) (the gradient of E in a loss that reads E^T v): one outer product per term
            terms = sp.MatAdd(*[mul(*args[:-1], term) for term in args[-1].args])
            return sign + self._paren(self._print(terms)) if sign else self._print(terms)
        if not _is_vector(args[-1]):
            raise NotImplementedError(f"batched product must end in a vector: {expr}")
        for i, m in enumerate(args[:-1]):
            if isinstance(m, sp.MatAdd):  # (A + B) v = A v + B v: each term applied to the rows on its own
                terms = sp.MatAdd(*[mul(*args[:i], term, *args[i + 1 :]) for term in m.args])
                return sign + self._paren(self._print(terms)) if sign else self._print(terms)
        out, bare = self._operand(args[-1]), True  # bare: no @ yet, so * can be chained without parentheses
        for m in reversed(args[:-1]):
            if isinstance(m, Diag):
                out = f"{self._operand(m.arg)} * {out if bare else self._paren(out)}"
            elif isinstance(m, sp.Transpose) and _is_vector(m.arg):  # p^T g: a dot product per row
                out, bare = f"({out} * {self._operand(m.arg)}).sum(axis=-1, keepdims=True)", True
            elif _is_vector(m):  # p c, c one number per row
                out = f"{self._operand(m)} * {out if bare else self._paren(out)}"
            else:
                out, bare = f"{out} @ {self._print(transpose(m))}", False
        return sign + out
