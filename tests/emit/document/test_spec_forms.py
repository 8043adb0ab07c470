"""How the document and the generated code spell the spec's later forms: named constants (by name in
the maths, by value in code, each value stated once), division, log, sqrt, sum and the binary
cross-entropy.  Exact strings: a printer is tested by what it prints."""

import sympy as sp

from conftest import CORPUS
from derive.emit.document.context import constant_latex
from derive.emit.printing import BatchedPrinter, ColumnPrinter, latex, text
from derive.ir.cell import dim_symbol
from derive.ir.exprs import BinaryCrossEntropy, Constant, Hadamard, LogSoftmax, Sum, mul
from derive.ir.ops import ACTIVATIONS_ALL, Reciprocal, Sigmoid
from derive.spec.parser import parse, read

n = dim_symbol("h")
h = sp.MatrixSymbol("h@t", n, 1)
v = sp.MatrixSymbol("v@t", n, 1)
r = sp.MatrixSymbol("r@t", n, 1)
dt, tau = Constant("dt", sp.Rational(1, 10)), Constant("tau", 2)


def test_a_constant_prints_by_name_in_the_maths_and_by_value_in_code():
    scaled = mul(dt / tau, h)
    assert latex(scaled) == r"\frac{\mathrm{dt}}{\tau} h_{t}"
    assert text(scaled) == "dt/tau h_t"
    assert BatchedPrinter().doprint(scaled) == "1/20 * h[t]"
    kept = mul(1 - dt, sp.MatrixSymbol("h@2", n, 1))  # a sum of numbers and constants: one coefficient
    assert latex(kept) == r"\left(1 - \mathrm{dt}\right) h_{2}"
    assert ColumnPrinter().doprint(kept) == "9/10 * h_2"


def test_each_constant_is_stated_once_with_its_value():
    cell = read(CORPUS / "ctrnn.cell")
    assert [constant_latex(c) for c in cell.constants] == [
        r"\mathrm{dt} = 0.1",
        r"\tau = 2",
        r"\mathrm{rate} = \frac{\mathrm{dt}}{\tau} = 0.05",
    ]


def test_a_constant_that_is_no_decimal_is_a_fraction():
    cell = parse(
        "param W[h, x], V[y, h]\ninput x[x]; state h[h]; target l: class(y)\nthird = 1 / 3\n"
        "h = tanh(W x + third * h[t-1])\ny = V h\nJ = cross_entropy(softmax(y), l)\n"
    )
    assert [constant_latex(c) for c in cell.constants] == [r"\mathrm{third} = \frac{1}{3}"]


def test_division_log_sqrt_sum_and_binary_cross_entropy_print_as_the_maths():
    quotient = Hadamard(h, Reciprocal(v))
    assert latex(quotient) == r"h_{t} \oslash v_{t}"
    assert text(quotient) == "h_t / v_t"
    assert BatchedPrinter().doprint(quotient) == "h[t] * np.reciprocal(v[t])"
    assert latex(ACTIVATIONS_ALL["sqrt"](v)) == r"\sqrt{v_{t}}"
    assert latex(ACTIVATIONS_ALL["log"](v)) == r"\log\left(v_{t}\right)"
    assert latex(Sum(Hadamard(r, v))) == r"\mathbf{1}^{T} \left(r_{t} \odot v_{t}\right)"
    assert BatchedPrinter().doprint(Sum(Hadamard(r, v))) == "_total(r[t] * v[t])"
    assert latex(LogSoftmax(v)) == r"\log \operatorname{softmax}\left(v_{t}\right)"
    assert latex(BinaryCrossEntropy(Sigmoid(v), r)) == (
        r"-\left(r_{t}^{T} \log \sigma\left(v_{t}\right) + \left(\mathbf{1} - r_{t}\right)^{T} "
        r"\log \left(\mathbf{1} - \sigma\left(v_{t}\right)\right)\right)"
    )
    assert text(BinaryCrossEntropy(Sigmoid(v), r)) == "binary_cross_entropy(sigmoid(v_t), r_t)"


def test_log_of_softmax_and_of_sigmoid_are_read_as_one_stable_operation():
    cell = parse(
        "param W[h, x], V[y, h]\ninput x[x]; state h[h]; target q[y]\nh = tanh(W x + log(sigmoid(h[t-1])))\n"
        "y = V h\nJ = -sum(q * log(softmax(y)))\n"
    )
    assert type(cell.equations[0].rhs.arg.args[1]).__name__ == "LogSigmoid"
    assert text(cell.equations[-1].rhs) == "-sum(q_t ⊙ log(softmax(y_t)))"


def test_a_constant_rebuilt_from_its_arguments_is_itself():
    """SymPy rebuilds expressions as func(*args) (expanding the proof's polynomials does)."""
    assert dt.func(*dt.args) == dt and dt.func(*dt.args).value == sp.Rational(1, 10)
    assert Constant("dt", 1) != dt  # the value is part of what a constant is
