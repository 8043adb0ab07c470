"""Stage 4: every rule in the table agrees with finite differences of its own forward op, and
every elementwise function's three forwards (the module's, SymPy's, the complex-step one) agree."""

import math

import numpy as np
import pytest
import sympy as sp
from sympy import MatrixSymbol

from derive.derivation.rules import RULES, Rules, jacobian, softmax_cross_entropy
from derive.emit.printing import ColumnPrinter
from derive.ir import ops
from derive.ir.exprs import (
    BinaryCrossEntropy,
    CrossEntropy,
    Elementwise,
    Hadamard,
    LogSoftmax,
    Outer,
    Softmax,
    SquaredError,
    Sum,
    contract,
    outer_terms,
)
from derive.ir.ops import ACTIVATIONS, ACTIVATIONS_ALL, Exp, Sigmoid, Tanh

FD_EPS = 1e-6
RULE_RTOL = 1e-7
N = 4
a = MatrixSymbol("a@1", N, 1)
out = MatrixSymbol("o@1", N, 1)
W = MatrixSymbol("W", N, N)
label = MatrixSymbol("l@1", N, 1)

rng = np.random.default_rng(7)
VALUES = {"a_1": rng.standard_normal((N, 1)), "W": rng.standard_normal((N, N)), "onehot_1": np.eye(N)[[2]].T}


def _softmax(v, axis=0):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cross_entropy(p, onehot):
    return -float(np.sum(onehot * np.log(p)))


def _ratio(a, b):
    return np.divide(a, b, out=np.zeros_like(b), where=a != 0)


def _log_softmax(v, axis=0):
    s = v - v.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


HELPERS = {op.code: op.helper for op in ops.HELPERS} | {
    "_squared_error": lambda y, r: 0.5 * float(np.sum((y - r) ** 2)),
    "_binary_cross_entropy": lambda p, r: -float(np.sum(r * np.log(p) + (1 - r) * np.log(1 - p))),
    "_log_softmax": _log_softmax,
}


def evaluate(expr, values):
    """Evaluate an expression through the column printer (our own output, not user text)."""
    namespace = {
        "np": np,
        "numpy": np,
        "_softmax": _softmax,
        "_cross_entropy": _cross_entropy,
        "_ratio": _ratio,
        **HELPERS,
        **values,
    }
    return np.asarray(eval(ColumnPrinter().doprint(expr), namespace), dtype=float)


def numeric_jacobian(rhs, wrt_name):
    base = VALUES[wrt_name]
    cols = []
    for i in range(base.size):
        shifted = []
        for sign in (1, -1):
            v = base.copy().ravel()
            v[i] += sign * FD_EPS
            shifted.append(evaluate(rhs, dict(VALUES, **{wrt_name: v.reshape(base.shape)})).ravel())
        cols.append((shifted[0] - shifted[1]) / (2 * FD_EPS))
    return np.array(cols).T


b = MatrixSymbol("b@1", N, 1)
VALUES["b_1"] = rng.standard_normal((N, 1))
r = MatrixSymbol("r@1", N, 1)
VALUES["r_1"] = rng.uniform(0, 1, (N, 1))
# every function of the spec, and those it is rewritten into; one defined for a > 0 only gets exp(a)
FUNCTIONS = {**ACTIVATIONS, "reciprocal": ACTIVATIONS_ALL["reciprocal"], "log_sigmoid": ACTIVATIONS_ALL["log_sigmoid"]}
CASES = {name: f(Exp(a)) if f.op.positive else f(a) for name, f in FUNCTIONS.items()} | {
    "log-softmax": LogSoftmax(a),
    "sum": Sum(Hadamard(Tanh(a), a)),
    "binary-cross-entropy": BinaryCrossEntropy(Sigmoid(sp.MatMul(W, a)), r),
    "binary-cross-entropy-of-p": BinaryCrossEntropy(Sigmoid(Tanh(a)) * 0.5, r),
    "divide": Hadamard(Tanh(a), ACTIVATIONS_ALL["reciprocal"](sp.MatAdd(sp.MatMul(2, sp.OneMatrix(N, 1)), Sigmoid(a)))),
    "softmax": Softmax(a),
    "matvec": W * a,
    "scaled": sp.MatMul(3, a),
    "scaled-matvec": sp.MatMul(-2, W, a),
    "add": sp.MatAdd(W * a, a),
    "one-minus": sp.MatAdd(sp.OneMatrix(N, 1), sp.MatMul(-1, Sigmoid(a))),
    "hadamard": Hadamard(Sigmoid(a), Tanh(b)),
    "hadamard-same": Hadamard(Sigmoid(a), Tanh(a)),
    "tanh-of-matvec": Tanh(W * a),
}


@pytest.mark.parametrize("name", CASES)
def test_rule_matches_finite_differences(name):
    rhs = CASES[name]
    analytic = evaluate(jacobian(rhs, a), VALUES)
    numeric = numeric_jacobian(rhs, "a_1")
    assert np.max(np.abs(analytic - numeric)) <= RULE_RTOL * max(1.0, np.max(np.abs(numeric)))


def test_rule_in_terms_of_the_output_symbol():
    # d tanh(a)/da written with the node's own value h: diag(1 - h^2)
    jac = jacobian(Tanh(a), a, out)
    assert evaluate(jac, dict(VALUES, o_1=np.tanh(VALUES["a_1"]))).shape == (N, N)
    assert out in jac.atoms(MatrixSymbol)


def test_cross_entropy_rule():
    p = MatrixSymbol("p@1", N, 1)
    values = dict(VALUES, p_1=_softmax(VALUES["a_1"]))
    analytic = evaluate(jacobian(CrossEntropy(p, label), p), values)
    expected = -(values["onehot_1"] / values["p_1"]).T
    assert np.allclose(analytic, expected, rtol=1e-14, atol=0)


def test_matvec_with_respect_to_the_matrix_is_an_outer_product():
    jac = jacobian(W * a, W)
    assert isinstance(jac, Outer) and jac.right == a and jac.param == W


def test_softmax_cross_entropy_collapses_to_p_minus_l():
    """Checked by SymPy itself on a 3-class example, not by our rules."""
    y = sp.symbols("y0:3")
    e = [sp.exp(v) for v in y]
    p = [v / sum(e) for v in e]
    J = -sp.log(p[1])  # label 1
    grad = [sp.simplify(sp.diff(J, v)) for v in y]
    assert [sp.simplify(g - (pi - (1 if i == 1 else 0))) for i, (g, pi) in enumerate(zip(grad, p))] == [0, 0, 0]
    p_sym = MatrixSymbol("p@1", N, 1)
    head = softmax_cross_entropy(CrossEntropy(p_sym, label), Softmax(a))
    assert str(head) in ("-l@1.T + p@1.T", "p@1.T - l@1.T")


def test_missing_rule_names_the_operator():
    without = Rules({op: rule for op, rule in RULES.table.items() if op is not Elementwise})
    with pytest.raises(NotImplementedError, match="no rule for Tanh"):
        without.jacobian(Tanh(a), a)


def test_squared_error_rule():
    r = MatrixSymbol("r@1", N, 1)
    values = dict(VALUES, r_1=rng.standard_normal((N, 1)))
    analytic = evaluate(jacobian(SquaredError(a, r), a), values)
    assert np.allclose(analytic, (values["a_1"] - values["r_1"]).T, rtol=1e-14, atol=0)


def test_nested_softmax_cross_entropy_collapses():
    analytic = evaluate(jacobian(CrossEntropy(Softmax(a), label), a), VALUES)
    assert np.allclose(analytic, (_softmax(VALUES["a_1"]) - VALUES["onehot_1"]).T, rtol=1e-14, atol=1e-15)


def test_one_rule_per_operator():
    assert set(RULES.table) == {
        sp.MatAdd,
        sp.MatMul,
        Hadamard,
        Elementwise,  # every function of ops, by its slope
        Softmax,
        CrossEntropy,
        SquaredError,
        BinaryCrossEntropy,
        Sum,
        LogSoftmax,
    }


def test_without_slopes_leaves_every_activation_derivative_out_and_the_table_alone():
    for f in ACTIVATIONS.values():
        assert RULES.without_slopes().jacobian(f(W * a), a) == W
    assert jacobian(Tanh(W * a), a) != W


# ---- the records of ops: one row each ---------------------------------------------------

# f at two points, worked out by hand: every record needs its row here
KNOWN_VALUES = {
    "tanh": ((0.5, math.tanh(0.5)), (-2.0, -math.tanh(2.0))),
    "sigmoid": ((0.0, 0.5), (2.0, 1 / (1 + math.exp(-2.0)))),
    "relu": ((0.7, 0.7), (-0.7, 0.0)),
    "exp": ((1.0, math.e), (-1.0, 1 / math.e)),
    "identity": ((0.3, 0.3), (-4.0, -4.0)),
    "softplus": ((0.0, math.log(2.0)), (1.5, math.log1p(math.exp(1.5)))),
    "step": ((0.2, 1.0), (-0.2, 0.0)),
    "log": ((1.0, 0.0), (math.e**2, 2.0)),
    "sqrt": ((4.0, 2.0), (0.25, 0.5)),
    "reciprocal": ((4.0, 0.25), (-0.5, -2.0)),
    "log_sigmoid": ((0.0, -math.log(2.0)), (-3.0, -math.log1p(math.exp(3.0)))),
}


def test_every_record_has_its_row():
    assert set(KNOWN_VALUES) == {op.name for op in ops.RECORDS}


@pytest.mark.parametrize("op", ops.RECORDS, ids=lambda op: op.name)
def test_the_three_forwards_of_a_record_agree_with_its_row(op):
    xs = np.array([x for x, _ in KNOWN_VALUES[op.name]])
    want = np.array([y for _, y in KNOWN_VALUES[op.name]])
    ufunc = getattr(np, op.ufunc.removeprefix("np.")) if op.ufunc else (lambda v: v)
    module = ufunc if op.helper is None else op.helper
    assert np.allclose(module(xs), want, rtol=1e-15, atol=0)
    assert np.allclose(op.numeric(xs.astype(complex)).real, want, rtol=1e-15, atol=0)
    assert np.allclose([float(op.scalar(sp.Float(x, 30))) for x in xs], want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("op", [op for op in ops.RECORDS if op.slope is not None], ids=lambda op: op.name)
def test_a_slope_is_the_derivative_of_the_scalar_forward(op):
    """SymPy differentiates the record's own scalar forward; the slope, printed, must agree."""
    v = sp.Symbol("v")
    f = ACTIVATIONS_ALL[op.name]
    for x in (0.3, 0.4, 2.1) if op.positive else (-1.3, 0.4, 2.1):
        want = float(sp.diff(op.scalar(v), v).subs(v, x)) if op.name != "step" else 0.0
        values = dict(VALUES, a_1=np.full((N, 1), x), o_1=np.full((N, 1), float(op.scalar(sp.Float(x)))))
        got = evaluate(jacobian(f(a), a, out), values)
        assert np.allclose(np.diag(got), want, rtol=1e-12, atol=1e-15)


# ---- a weight in several places, or transposed: the sum of its places' Outer maps -----------

M = 3  # a weight that is not square, so that a transposed map has a shape of its own to get wrong
E = MatrixSymbol("E", N, M)
x = MatrixSymbol("x@1", M, 1)
VALUES |= {"E": rng.standard_normal((N, M)), "x_1": rng.standard_normal((M, 1))}
PLACES = {  # (rhs, weight): one row vector g^T per case, contracted against finite differences
    "two-terms": (sp.MatAdd(W * a, W * b), W),
    "both-factors": (Hadamard(Tanh(W * a), Tanh(sp.MatAdd(W * a, b))), W),
    "both-sides": (sp.MatMul(W, W, a), W),
    "transposed": (sp.MatMul(sp.Transpose(E), a), E),
    "transposed-scaled": (sp.MatMul(-2, sp.Transpose(E), a), E),
    "transposed-inside": (Tanh(sp.MatMul(W, E, x)), E),
    "tied-pair": (sp.MatMul(sp.Transpose(E), E, x), E),
    "tied-sum": (sp.MatAdd(sp.MatMul(sp.Transpose(E), a), sp.MatMul(sp.Transpose(E), E, x)), E),
}


@pytest.mark.parametrize("name", PLACES)
def test_a_weight_in_several_places_contracts_to_the_finite_difference_gradient(name):
    """g^T d rhs/dW is the gradient of the number g^T rhs: the sum of its places' contractions."""
    rhs, weight = PLACES[name]
    g = np.random.default_rng(3).standard_normal((rhs.shape[0], 1))
    analytic = evaluate(contract(jacobian(rhs, weight), MatrixSymbol("g", rhs.shape[0], 1)), dict(VALUES, g=g))
    base = VALUES[weight.name]
    numeric = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        shifted = []
        for sign in (1, -1):
            v = base.copy()
            v[idx] += sign * FD_EPS
            shifted.append((g.T @ evaluate(rhs, dict(VALUES, **{weight.name: v}))).item())
        numeric[idx] = (shifted[0] - shifted[1]) / (2 * FD_EPS)
    assert analytic.shape == base.shape
    assert np.max(np.abs(analytic - numeric)) <= RULE_RTOL * max(1.0, np.max(np.abs(numeric)))


def test_a_weight_in_two_terms_is_the_sum_of_two_outer_maps():
    assert jacobian(sp.MatAdd(W * a, W * b), W) == sp.MatAdd(Outer(a, W), Outer(b, W))


def test_a_weight_on_both_sides_is_its_own_place_and_the_place_inside():
    """V V a is V (V a): d/dV = Outer(V a) + Outer(a) with V between."""
    assert outer_terms(jacobian(sp.MatMul(W, W, a), W)) == (Outer(sp.MatMul(W, a), W), Outer(a, W, W))


def test_a_transposed_weight_contracts_to_v_g_transposed():
    """d(E^T a)/dE, contracted with g: (g a^T)^T = a g^T, of the shape of E."""
    jac = jacobian(sp.MatMul(sp.Transpose(E), a), E)
    assert jac == Outer(a, E, transposed=True) and jac.shape == E.shape
    g = MatrixSymbol("g", M, 1)
    assert contract(jac, g) == sp.MatMul(a, sp.Transpose(g))


def test_a_tied_pair_adds_the_transposed_place_and_the_plain_one():
    """E^T E x: Outer(E x, transposed) + Outer(x) with E^T between."""
    jac = jacobian(sp.MatMul(sp.Transpose(E), E, x), E)
    assert outer_terms(jac) == (Outer(E * x, E, transposed=True), Outer(x, E, sp.Transpose(E)))
