"""Printers: exact strings, one concept per test."""

import sympy as sp
from sympy import HadamardPower, MatrixSymbol, OneMatrix

from derive.emit.printing import BatchedPrinter, ColumnPrinter, LatexPrinter, latex, latex_width, text
from derive.ir.exprs import Diag, Outer, Softmax, add, mul, neg, transpose
from derive.ir.ops import Tanh

n_h, n_x, n_y = (sp.Symbol(f"n_{d}", integer=True, positive=True) for d in "hxy")
W_hh = MatrixSymbol("W_hh", n_h, n_h)
W_xh = MatrixSymbol("W_xh", n_h, n_x)
W_hy = MatrixSymbol("W_hy", n_y, n_h)
h_t = MatrixSymbol("h@t", n_h, 1)
h_prev = MatrixSymbol("h@t-1", n_h, 1)
x_t = MatrixSymbol("x@t", n_x, 1)
dz = MatrixSymbol("dz@t", n_h, 1)
dh = MatrixSymbol("dh@t", n_h, 1)
D = Diag(add(OneMatrix(n_h, 1), neg(HadamardPower(h_t, 2))))
z_rhs = sp.MatAdd(W_xh * x_t, W_hh * h_prev)


def test_latex_sum_keeps_written_order():
    assert latex(z_rhs) == "W_{xh} x_{t} + W_{hh} h_{t-1}"


def test_latex_diag_of_tanh_derivative():
    assert latex(D) == r"\operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right)"


def test_latex_hadamard_form_of_diag_times_vector():
    assert latex(mul(D, dh), hadamard=True) == r"\left(\mathbf{1} - h_{t}^{\circ 2}\right) \odot \delta^{h}_{t}"


def test_latex_transpose_of_product_is_pushed_to_symbols():
    assert latex(transpose(mul(W_hy, D))) == r"\operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right) W_{hy}^{T}"


def test_latex_partial():
    from derive.derivation.chain import Factor

    assert LatexPrinter().partial(Factor("z@3", "h@2")) == r"\frac{\partial z_{3}}{\partial h_{2}}"


def test_latex_functions():
    assert latex(Tanh(MatrixSymbol("z@1", n_h, 1))) == r"\tanh\left(z_{1}\right)"
    assert latex(Softmax(MatrixSymbol("y@1", n_y, 1))) == r"\operatorname{softmax}\left(y_{1}\right)"


def test_latex_negative_coefficient_leads():
    p, l_ = MatrixSymbol("p@t", n_y, 1), MatrixSymbol("l@t", n_y, 1)
    assert latex(transpose(add(p, neg(l_)))) == r"\left(p_{t} - l_{t}\right)^{T}"


def test_column_printer_on_concrete_steps():
    h3 = MatrixSymbol("h@3", n_h, 1)
    D3 = Diag(add(OneMatrix(n_h, 1), neg(HadamardPower(h3, 2))))
    assert ColumnPrinter().doprint(mul(transpose(W_hh), D3)) == "W_hh.T @ np.diagflat(1 - h_3**2)"
    assert ColumnPrinter().doprint(Diag(HadamardPower(MatrixSymbol("p@2", n_y, 1), -1))) == "np.diagflat(1 / p_2)"


def test_batched_printer_row_major_products():
    printer = BatchedPrinter({"dz@t": "dz", "dh@t": "dh"})
    assert printer.doprint(z_rhs) == "x[t] @ W_xh.T + h[t - 1] @ W_hh.T"
    assert printer.doprint(mul(transpose(W_hh), dz)) == "dz @ W_hh"
    assert printer.doprint(mul(D, dh)) == "(1 - h[t]**2) * dh"


def test_batched_printer_outer_product_sums_over_batch():
    assert BatchedPrinter({"dz@t": "dz"}).doprint(mul(dz, transpose(h_prev))) == "dz.T @ h[t - 1]"


def test_text_printer_for_comments():
    assert text(z_rhs) == "W_xh x_t + W_hh h_{t-1}"
    assert text(mul(D, dh)) == "(1 - h_t^2) ⊙ dJ/dh_t"


# ---- a tied weight E^T, and the gradients its transposed place makes ----------------------------

E = MatrixSymbol("E", n_h, n_x)
dy = MatrixSymbol("dy@t", n_x, 1)


def test_latex_transposed_parameter():
    assert latex(mul(sp.Transpose(E), h_t)) == "E^{T} h_{t}"


def test_latex_transposed_delta_is_one_group_before_its_superscript():
    """delta^y_t^T would be a double superscript: the name is braced first."""
    assert latex(sp.Transpose(dy)) == r"{\delta^{y}_{t}}^{T}"


def test_latex_gradient_of_a_transposed_place_is_v_delta_transposed():
    assert latex(Outer(h_t, E, transposed=True).contract(dy)) == r"h_{t} {\delta^{y}_{t}}^{T}"


def test_text_and_column_transposed_parameter():
    assert text(mul(sp.Transpose(E), h_t)) == "E^T h_t"
    assert ColumnPrinter().doprint(mul(sp.Transpose(E), MatrixSymbol("h@1", n_h, 1))) == "E.T @ h_1"


def test_batched_transposed_parameter_multiplies_rows_by_the_matrix_itself():
    assert BatchedPrinter().doprint(mul(sp.Transpose(E), h_t)) == "h[t] @ E"


def test_batched_gradient_of_a_transposed_place_sums_v_g_over_the_batch():
    assert BatchedPrinter().doprint(Outer(h_t, E, transposed=True).contract(dy)) == "h[t].T @ dy[t]"
    assert BatchedPrinter().doprint(Outer(E * x_t, E, transposed=True).contract(dy)) == "(x[t] @ E.T).T @ dy[t]"


def test_latex_width_counts_an_upright_function_name():
    assert latex_width(r"\tanh\left(z_{1}\right)") == len("tanh(z1)")


def test_batched_column_times_a_sum_of_rows_is_one_outer_product_per_term():
    """h (h^T E - r^T): the gradient of E in J = squared_error(E^T h, r), whose L is the row (y - r)^T."""
    r = MatrixSymbol("r@t", n_x, 1)
    row = sp.MatAdd(mul(transpose(h_t), E), neg(transpose(r)))
    assert BatchedPrinter().doprint(mul(h_t, row)) == "h[t].T @ (h[t] @ E) - h[t].T @ r[t]"
