"""The cell specification language (derive.spec.parser): exact error positions, the cells it builds, and no eval.

Every bad spec is the issue's Elman example with one line changed, so the line and
column of the expected error are known exactly.
"""

from __future__ import annotations

import builtins

import pytest
import sympy as sp
import sympy.parsing.sympy_parser as sympy_parser

import derive.ir.cell
from derive.ir.cell import CELLS, Cell, Equation, Param, Vector, dim_symbol, seed_rnn
from derive.ir.exprs import CrossEntropy, Hadamard, Softmax, SquaredError
from derive.ir.ops import Sigmoid, Tanh
from derive.spec.lexer import SpecError
from derive.spec.parser import parse, read

# The issue's example: line 1 is a comment, lines 2-3 declarations, lines 4-7 equations.
BASE = """\
# elman.cell
param W_xh[h, x], W_hh[h, h], W_hy[y, h], b_h[h], b_y[y]
input x[x]; state h[h] = 0; target label: class(y)
z = W_xh x + W_hh h[t-1] + b_h
h = tanh(z)
y = W_hy h + b_y
J = cross_entropy(softmax(y), label)
"""


def edit(line: int, new: str) -> str:
    """BASE with line ``line`` (1-based) replaced by ``new`` (which may hold several lines)."""
    lines = BASE.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


# ---- symbols, to build the expected SymPy expressions by hand -----------------------------


def mat(name: str, rows: str, cols: str | None = None) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, dim_symbol(rows), dim_symbol(cols) if cols else 1)


def vec(name: str, dim: str, step: str = "t") -> sp.MatrixSymbol:
    return sp.MatrixSymbol(f"{name}@{step}", dim_symbol(dim), 1)


W_xh, W_hh, W_hy = mat("W_xh", "h", "x"), mat("W_hh", "h", "h"), mat("W_hy", "y", "h")
b_h, b_y = mat("b_h", "h"), mat("b_y", "y")
x_t, h_prev, z_t, h_t, y_t = vec("x", "x"), vec("h", "h", "t-1"), vec("z", "h"), vec("h", "h"), vec("y", "y")
label_t = vec("label", "y")


def target(name: str, dim: str, kind: str) -> Vector:
    """A target as the parser builds it: ``Target(name, dim, kind)`` where derive.ir.cell has it, else a Vector."""
    cls = getattr(derive.ir.cell, "Target", None)
    return cls(name, dim, kind) if cls is not None else Vector(name, dim)


BASE_EQUATIONS = (
    Equation("z", sp.MatAdd(sp.MatMul(W_xh, x_t), sp.MatMul(W_hh, h_prev), b_h)),
    Equation("h", Tanh(z_t)),
    Equation("y", sp.MatAdd(sp.MatMul(W_hy, h_t), b_y)),
    Equation("J", CrossEntropy(Softmax(y_t), label_t)),
)


# ---- bad specs: exact positions -----------------------------------------------------------

BAD = [
    # (id, text, (line, col), part of the message)
    ("empty-file", "", (1, 1), "empty file"),
    ("only-comments-and-blank-lines", "# a cell\n\n   # nothing else\n", (4, 1), "empty file"),
    ("only-a-comment-no-newline", "# only a comment", (1, 17), "empty file"),
    ("only-separators", "\n;\n ; ;\n", (4, 1), "empty file"),
    ("unknown-function-gelu", edit(5, "h = gelu(z)"), (5, 5), "unknown function 'gelu'"),
    ("undefined-name", edit(4, "z = W_xh x + W_hh h[t-1] + b_q"), (4, 28), "undefined name 'b_q'"),
    ("function-without-parentheses", edit(5, "h = tanh"), (5, 5), "tanh is a function"),
    ("name-not-an-identifier", edit(1, "param 2W[h, x]"), (1, 7), "'2W' is not a name"),
    ("initial-state-name-node", edit(4, "h0 = W_xh x\nz = W_xh x + W_hh h[t-1] + b_h"), (4, 1), "'h0' would share"),
    ("initial-state-name-param", edit(1, "param h0[h, x]"), (1, 7), "initial value of state 'h'"),
    ("reserved-loop-local", edit(1, "param seq[h, x]"), (1, 7), "'seq' is reserved"),
    ("number-too-large", edit(4, "z = 1e400 W_xh x + W_hh h[t-1] + b_h"), (4, 5), "between 1e-12 and 1e12"),
    ("number-too-small", edit(4, "z = 1e-300 * W_xh x + W_hh h[t-1] + b_h"), (4, 5), "got 1e-300"),
    (
        "step-local-of-a-state",
        edit(4, "h_1 = W_xh x + W_hh h[t-1] + b_h\nz = h_1"),
        (4, 1),
        "'h_1' would share a name with h at step 1 in the generated code; rename it",
    ),
    (
        "step-local-of-a-gradient",
        edit(1, "param dz_2[h, x]"),
        (1, 7),
        "'dz_2' would share a name with the gradient of z at step 2",
    ),
    (
        "constant-named-as-a-step",
        edit(4, "h_1 = 0.5\nz = h_1 * W_xh x + W_hh h[t-1] + b_h"),
        (4, 1),
        "'h_1' would share a name with h at step 1 in the document; rename it",
    ),
    ("reserved-double-underscore", edit(1, "param W__h[h, x]"), (1, 7), "'W__h' is reserved"),
    ("reserved-acc-suffix", edit(4, "z_acc = W_xh x + W_hh h[t-1] + b_h"), (4, 1), "'z_acc' is reserved"),
    ("reserved-zero-suffix", edit(1, "param W_zero[h, x]"), (1, 7), "'W_zero' is reserved"),
    ("reserved-helper-prefix", edit(1, "param _empty[h, x]"), (1, 7), "'_empty' is reserved"),
    ("reserved-loop-name", edit(4, "loss_t = W_xh x + W_hh h[t-1] + b_h"), (4, 1), "'loss_t' is reserved"),
    ("reserved-block-row", edit(1, "param dJ_dsk[h, x]"), (1, 7), "'dJ_dsk' is reserved"),
    ("reserved-rows-view", edit(4, "z_rows = W_xh x + W_hh h[t-1] + b_h"), (4, 1), "'z_rows' is reserved"),
    ("reserved-lag-view", edit(3, "input x_rows_prev[x]; state h[h] = 0; target label: class(y)"), (3, 7), "reserved"),
    ("state-never-read-earlier", edit(4, "z = W_xh x + b_h"), (3, 19), "state 'h' is never read at an earlier step"),
    ("reserved-previous-step", edit(4, "h_prev = W_xh x + W_hh h[t-1] + b_h"), (4, 1), "'h_prev' is reserved"),
    ("reserved-framework-name", edit(1, "param device[h, x]"), (1, 7), "'device' is reserved"),
    (
        "keyword-input-as-name",
        edit(3, "input = x; state h[h] = 0; target label: class(y)"),
        (3, 7),
        "expected an input name",
    ),
    ("keyword-cell-as-param-name", edit(1, "param cell[h]"), (1, 7), "'cell' is a keyword, not a name"),
    ("keyword-in-expression", edit(5, "h = tanh(state)"), (5, 10), "'state' is a keyword"),
    ("keyword-as-dimension", edit(1, "param U[h, loss]"), (1, 12), "'loss' is a keyword"),
    (
        "matrix-times-wrong-size-vector",
        edit(4, "z = W_xh h[t-1] + W_hh h[t-1] + b_h"),
        (4, 10),
        "shape mismatch: a matrix (h, x) times a vector of size h",
    ),
    (
        "add-different-sizes",
        edit(4, "z = W_xh x + W_hh h[t-1] + b_y"),
        (4, 26),
        "shape mismatch: a vector of size h + a vector of size y",
    ),
    (
        "elementwise-different-sizes",
        edit(5, "h = tanh(z) * b_y"),
        (5, 13),
        "shape mismatch: a vector of size h * a vector of size y",
    ),
    ("star-with-a-matrix", edit(4, "z = W_xh * x + W_hh h[t-1] + b_h"), (4, 10), "written W x, without '*'"),
    ("vector-next-to-vector", edit(5, "h = tanh(z) b_h"), (5, 13), "only a weight matrix multiplies a vector"),
    ("add-a-matrix", edit(4, "z = W_xh x + W_hh + b_h"), (4, 12), "cannot add or subtract a matrix"),
    ("negate-a-matrix", edit(4, "z = -W_xh + W_hh h[t-1] + b_h"), (4, 5), "cannot negate a matrix (h, x)"),
    (
        "state-update-wrong-size",
        edit(5, "h = tanh(b_y)"),
        (5, 5),
        "state h has size h but its update is a vector of size y",
    ),
    ("equation-not-a-vector", edit(5, "h = 2"), (5, 5), "must be a vector, got a number"),
    ("future-step", edit(4, "z = W_xh x + W_hh h[t+1] + b_h"), (4, 22), "h[t+1] refers to the future"),
    (
        "previous-step-of-a-param",
        edit(4, "z = W_xh x + W_hh h[t-1] + b_h[t-1]"),
        (4, 28),
        "b_h[t-1]: only a state or an input has earlier steps, and 'b_h' is a parameter",
    ),
    ("unclosed-bracket-at-end-of-line", edit(4, "z = W_xh x + W_hh h[t-1"), (4, 20), "h[ is never closed"),
    ("unclosed-bracket", edit(4, "z = W_xh x + W_hh h[t-1 + b_h"), (4, 20), "expected ']' before '+'"),
    ("fractional-step", edit(4, "z = W_xh x + W_hh h[t-1.5] + b_h"), (4, 23), "whole number of steps"),
    ("step-not-t", edit(4, "z = W_xh x + W_hh h[s-1] + b_h"), (4, 21), "expected a step such as t-1"),
    ("indexed-equation-name", edit(5, "h[t] = tanh(z)"), (5, 2), "write 'h = ...'"),
    (
        "state-without-update",
        edit(3, "input x[x]; state h[h] = 0, c[h] = 0; target label: class(y)"),
        (3, 29),
        "state 'c' has no update",
    ),
    ("missing-loss-softmax-is-not-a-loss", edit(7, "J = softmax(y)"), (7, 1), "expected a loss"),
    (
        "loss-inside-an-expression",
        edit(7, "J = W_hy cross_entropy(softmax(y), label)"),
        (7, 10),
        "a matrix (y, h) next to a loss: losses are only added",
    ),
    (
        "cross-entropy-with-real-target",
        edit(3, "input x[x]; state h[h] = 0; target label[y]"),
        (7, 31),
        "cross_entropy needs a class target",
    ),
    (
        "squared-error-with-class-target",
        edit(7, "J = squared_error(softmax(y), label)"),
        (7, 31),
        "squared_error needs a real target",
    ),
    ("loss-of-a-non-target", edit(7, "J = cross_entropy(softmax(y), y)"), (7, 31), "expected a declared target"),
    ("loss-with-one-argument", edit(7, "J = cross_entropy(softmax(y))"), (7, 5), "takes two arguments"),
    (
        "loss-minus-a-loss",
        edit(7, "J = cross_entropy(softmax(y), label) - cross_entropy(softmax(y), label)"),
        (7, 38),
        "cross_entropy is subtracted: a named loss is only added (sum(...) may be subtracted)",
    ),
    ("loss-negated", edit(7, "J = -cross_entropy(softmax(y), label)"), (7, 5), "cross_entropy is subtracted"),
    ("sum-zero-weight", edit(7, "J = 0 * sum(y)"), (7, 7), "a loss is weighted by a number other than 0, got 0"),
    (
        "sum-inside-an-expression",
        edit(7, "J = tanh(sum(y))"),
        (7, 10),
        "sum(...) is a loss: it must be a whole equation",
    ),
    ("sum-of-a-matrix", edit(7, "J = sum(W_hy)"), (7, 9), "sum: expected a vector, got a matrix (y, h)"),
    ("sum-of-two", edit(7, "J = sum(y, y)"), (7, 5), "sum takes one argument, got 2"),
    (
        "target-outside-the-loss",
        edit(6, "y = W_hy h + b_y + label\nJ = sum(y)"),
        (6, 18),
        "the target label@t cannot be combined",
    ),
    (
        "binary-cross-entropy-with-class-target",
        edit(7, "J = binary_cross_entropy(sigmoid(y), label)"),
        (7, 38),
        "binary_cross_entropy needs a real target, declared as 'target r[y]'",
    ),
    ("log-of-two", edit(5, "h = log(z, z)"), (5, 5), "log takes one argument, got 2"),
    ("loss-plus-a-vector", edit(7, "J = cross_entropy(softmax(y), label) + y"), (7, 38), "losses are only added"),
    ("loss-times-a-vector", edit(7, "J = y * cross_entropy(softmax(y), label)"), (7, 7), "losses are only added"),
    ("loss-negative-weight", edit(7, "J = -1 * cross_entropy(softmax(y), label)"), (7, 8), "positive number"),
    ("loss-zero-weight", edit(7, "J = 0 * cross_entropy(softmax(y), label)"), (7, 7), "positive number, got 0"),
    (
        "loss-inside-a-function",
        edit(7, "J = tanh(cross_entropy(softmax(y), label))"),
        (7, 10),
        "it must be a whole equation",
    ),
    ("loss-shape-mismatch", edit(7, "J = cross_entropy(softmax(h), label)"), (7, 5), "shape mismatch: cross_entropy"),
    (
        "two-losses",
        edit(7, "J = cross_entropy(softmax(y), label); K = cross_entropy(softmax(y), label)"),
        (7, 39),
        "a second loss 'K'",
    ),
    ("target-in-arithmetic", edit(6, "y = W_hy h + label"), (6, 12), "the target label@t cannot be combined"),
    ("duplicate-declaration", edit(1, "param W_xh[h, x]"), (2, 7), "'W_xh' is declared twice"),
    ("duplicate-across-kinds", edit(1, "param x[x]"), (3, 7), "'x' is declared twice"),
    (
        "equation-assigns-an-input",
        edit(6, "x = W_hy h + b_y"),
        (6, 1),
        "'x' is declared as an input: it cannot be computed",
    ),
    (
        "equation-assigns-a-param",
        edit(6, "b_y = W_hy h"),
        (6, 1),
        "'b_y' is declared as a parameter: it cannot be computed",
    ),
    (
        "constant-shadows-a-param",
        edit(6, "b_y = 0.5\ny = W_hy h"),
        (6, 1),
        "'b_y' is declared as a parameter: a constant needs a name of its own",
    ),
    (
        "constant-never-used",
        edit(4, "alpha = 0.5\nz = W_xh x + W_hh h[t-1] + b_h"),
        (4, 9),
        "constant 'alpha' is never used",
    ),
    (
        "constant-used-before-defined",
        edit(4, "z = alpha * W_xh x + W_hh h[t-1] + b_h\nalpha = 0.5"),
        (4, 5),
        "alpha is used before it is defined (line 5): define it first",
    ),
    (
        "constant-read-at-a-step",
        edit(4, "alpha = 0.5\nz = alpha[t-1] * W_xh x + W_hh h[t-1] + b_h"),
        (5, 5),
        "'alpha' is a constant, the same at every step: write alpha",
    ),
    (
        "divide-by-a-matrix",
        edit(4, "z = W_xh x / W_hh + b_h"),
        (4, 12),
        "cannot divide by a matrix (h, h): only by a number or elementwise by a vector",
    ),
    (
        "divide-a-matrix-by-a-vector",
        edit(4, "z = (W_hh / b_h) h[t-1] + W_xh x"),
        (4, 11),
        "cannot divide a matrix (h, h) by a vector of size h",
    ),
    ("divide-by-zero", edit(4, "z = W_xh x / 0 + W_hh h[t-1] + b_h"), (4, 12), "division by zero: the divisor is 0"),
    (
        "divide-by-a-zero-constant",
        edit(4, "c = 2 - 2\nz = W_xh x / c + W_hh h[t-1] + b_h"),
        (5, 12),
        "division by zero: c is 0",
    ),
    (
        "divide-different-sizes",
        edit(5, "h = tanh(z) / b_y"),
        (5, 13),
        "shape mismatch: a vector of size h / a vector of size y",
    ),
    ("divide-by-a-target", edit(6, "y = W_hy h / label"), (6, 12), "the target label@t cannot be combined with '/'"),
    ("equation-assigns-a-target", edit(6, "label = W_hy h + b_y"), (6, 1), "cannot be computed"),
    ("node-defined-twice", edit(6, "z = W_hy h + b_y"), (6, 1), "'z' is defined twice"),
    ("param-never-used", edit(1, "param U[h, h]"), (1, 7), "parameter 'U' is never used"),
    ("input-never-used", edit(1, "input u[x]"), (1, 7), "input 'u' is never used"),
    ("state-used-before-computed", edit(4, "z = W_xh x + W_hh h + b_h"), (4, 19), "write h[t-1] for the previous step"),
    ("unterminated-title", edit(1, 'cell elman "Elman RNN'), (1, 12), "unterminated string"),
    (
        "state-initial-value-not-zero",
        edit(3, "input x[x]; state h[h] = 1; target label: class(y)"),
        (3, 26),
        "expected 0",
    ),
    ("loss-sometimes", edit(1, "loss: sometimes"), (1, 7), "expected 'every step' or 'last step'"),
    ("loss-without-colon", edit(1, "loss every step"), (1, 6), "expected ':'"),
    ("loss-last-without-step", edit(1, "loss: last"), (1, 11), "expected 'step'"),
    (
        "target-without-kind",
        edit(3, "input x[x]; state h[h] = 0; target label"),
        (3, 41),
        "expected ': class(dim)' or '[dim]'",
    ),
    ("target-not-class", edit(3, "input x[x]; state h[h] = 0; target label: real(y)"), (3, 43), "expected class(dim)"),
    ("param-with-three-dims", edit(1, "param U[h, h, h]"), (1, 13), "at most two dimensions"),
    ("junk-after-statement", edit(1, "cell elman rnn"), (1, 12), "expected the end of the statement"),
    ("statement-starts-with-operator", edit(1, "= 3"), (1, 1), "expected a declaration or an equation"),
    ("equation-without-equals", edit(5, "h tanh(z)"), (5, 3), "'=' after 'h'"),
    ("unexpected-character", edit(5, "h = tanh(z) % 2"), (5, 13), "unexpected character '%'"),
    ("non-ascii-name", edit(5, "h = tanh(zé)"), (5, 11), "unexpected character 'é'"),
    ("nul-character", edit(5, "h = tanh(z)\x00"), (5, 12), "U+0000"),
    ("bell-character", edit(5, "h = tanh(\x07z)"), (5, 10), "U+0007"),
    (
        "nested-too-deeply",  # SymPy and the chain rule would run out of Python's recursion limit
        edit(5, "h = tanh(z + " + " * ".join(["h[t-1]"] * 200) + ")"),
        (5, 5),
        "expression nested too deeply (202 operations inside one another, at most 100): name some of its parts",
    ),
]


@pytest.mark.parametrize(("text", "pos", "fragment"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_spec_position_and_message(text: str, pos: tuple[int, int], fragment: str) -> None:
    with pytest.raises(SpecError) as e:
        parse(text, "bad.cell")
    assert (e.value.line, e.value.col) == pos, str(e.value)
    assert fragment in e.value.message
    assert str(e.value) == f"bad.cell:{pos[0]}:{pos[1]}: {e.value.message}"


def test_the_deepest_expression_allowed_parses() -> None:
    from derive.spec.builder import MAX_DEPTH

    products = " * ".join(["h[t-1]"] * (MAX_DEPTH - 2))  # tanh, then +, then MAX_DEPTH - 3 products deep
    cell = parse(edit(5, f"h = tanh(z + {products})"), "deep.cell")
    assert cell.equation("h").line == 5
    with pytest.raises(SpecError, match=f"5:5: expression nested too deeply \\({MAX_DEPTH + 1} operations"):
        parse(edit(5, f"h = tanh(z + {products} * h[t-1])"), "deep.cell")


def test_equations_keep_where_the_spec_writes_them() -> None:
    cell = parse(BASE, "elman.cell")
    assert [(eq.name, eq.line, eq.col) for eq in cell.equations] == [("z", 4, 5), ("h", 5, 5), ("y", 6, 5), ("J", 7, 5)]
    assert cell.path == "elman.cell"
    assert cell.where("h") == "elman.cell:5:5"


def test_bad_spec_ids_are_unique() -> None:
    ids = [case[0] for case in BAD]
    assert len(ids) == len(set(ids))


def test_base_spec_that_the_bad_specs_edit_parses() -> None:
    cell = parse(BASE, "elman.cell", "elman")
    assert cell.equations == BASE_EQUATIONS


def test_spec_error_attributes_and_str() -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(5, "h = gelu(z)"), "cells/elman.cell")
    err = e.value
    assert (err.path, err.line, err.col) == ("cells/elman.cell", 5, 5)
    assert str(err) == f"cells/elman.cell:5:5: {err.message}"
    assert err.message.startswith("unknown function 'gelu'")


def test_missing_loss_message_mentions_loss() -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(7, "J = softmax(y)"))
    assert "loss" in e.value.message
    assert "cross_entropy" in e.value.message


def test_line_numbers_count_lines_inside_parentheses() -> None:
    text = edit(4, "z = (W_xh x\n     + W_hh h[t-1]\n     + b_h)").replace("h = tanh(z)", "h = gelu(z)")
    with pytest.raises(SpecError) as e:
        parse(text)
    assert (e.value.line, e.value.col) == (7, 5)


def test_line_numbers_count_crlf_line_endings() -> None:
    text = edit(5, "h = gelu(z)").replace("\n", "\r\n")
    with pytest.raises(SpecError) as e:
        parse(text)
    assert (e.value.line, e.value.col) == (5, 5)


# ---- read(): files that are not text ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "pos", "fragment"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff", (1, 1), "not UTF-8 text (byte 0x89)"),
        (b"\xff\xfe\x00\x00", (1, 1), "byte 0xff"),
        (BASE.encode().replace(b"h = tanh(z)", b"h = \xfetanh(z)"), (5, 5), "byte 0xfe"),
        (BASE.encode() + b"\x00\x01\x02", (8, 1), "U+0000"),
        (BASE.encode().replace(b"y = W_hy", b"y =\x0c W_hy"), (6, 4), "U+000C"),
        (BASE.encode().replace(b"h = tanh", b"h = \x1b[31mtanh"), (5, 5), "U+001B"),
    ],
    ids=["png-header", "utf32-bom", "invalid-byte-on-line-5", "nul-at-end", "form-feed", "escape-sequence"],
)
def test_read_rejects_binary_and_control_characters(tmp_path, data: bytes, pos: tuple[int, int], fragment: str) -> None:
    path = tmp_path / "junk.cell"
    path.write_bytes(data)
    with pytest.raises(SpecError) as e:
        read(path)
    assert (e.value.line, e.value.col) == pos, str(e.value)
    assert fragment in e.value.message
    assert e.value.path == str(path)
    assert str(e.value).startswith(f"{path}:{pos[0]}:{pos[1]}: ")


def test_read_missing_file(tmp_path) -> None:
    path = tmp_path / "absent.cell"
    with pytest.raises(SpecError) as e:
        read(path)
    assert (e.value.line, e.value.col) == (1, 1)
    assert "cannot read the spec" in e.value.message


def test_read_names_the_cell_after_the_file(tmp_path) -> None:
    (tmp_path / "my-elman.cell").write_text(BASE)
    (tmp_path / "2x.cell").write_text(BASE)
    (tmp_path / "named.cell").write_text('cell elman "Elman RNN with biases"\n' + BASE)
    assert read(tmp_path / "my-elman.cell").name == "my_elman"
    assert read(tmp_path / "2x.cell").name == "cell_2x"
    named = read(str(tmp_path / "named.cell"))
    assert (named.name, named.title) == ("elman", "Elman RNN with biases")


def test_read_decoding_error_column_counts_characters(tmp_path) -> None:
    path = tmp_path / "accents.cell"
    path.write_bytes("# éé ".encode() + b"\xff\n")  # the bad byte is the 6th character, the 8th byte
    with pytest.raises(SpecError) as e:
        read(path)
    assert (e.value.line, e.value.col) == (1, 6)


# ---- good specs ---------------------------------------------------------------------------


def test_rnn_cell_is_the_seed() -> None:
    cell = read(CELLS / "rnn.cell")
    assert cell == seed_rnn()
    assert cell.dims == ("x", "h", "y")


def test_rnn_cell_by_hand() -> None:
    l_t, p_t, z = vec("l", "y"), vec("p", "y"), vec("z", "h")
    expected = Cell(
        name="rnn",
        title="Vanilla RNN (the seed model)",
        dims=("x", "h", "y"),
        params=(Param("W_xh", ("h", "x")), Param("W_hh", ("h", "h")), Param("W_hy", ("y", "h"))),
        inputs=(Vector("x", "x"),),
        targets=(target("l", "y", "class"),),
        states=(Vector("h", "h"),),
        equations=(
            Equation("z", sp.MatAdd(sp.MatMul(W_xh, x_t), sp.MatMul(W_hh, h_prev))),
            Equation("h", Tanh(z)),
            Equation("y", sp.MatMul(W_hy, h_t)),
            Equation("p", Softmax(y_t)),
            Equation("J", CrossEntropy(p_t, l_t)),
        ),
        loss="J",
        loss_mode="every",
    )
    assert read(CELLS / "rnn.cell") == expected


def test_issue_example_parses() -> None:
    cell = parse(BASE)
    assert (cell.name, cell.title) == ("cell", "cell")
    assert cell.dims == ("x", "h", "y")
    assert cell.params == (
        Param("W_xh", ("h", "x")),
        Param("W_hh", ("h", "h")),
        Param("W_hy", ("y", "h")),
        Param("b_h", ("h",)),
        Param("b_y", ("y",)),
    )
    assert cell.param("b_h").symbol.shape == (dim_symbol("h"), 1)
    assert cell.inputs == (Vector("x", "x"),)
    assert cell.states == (Vector("h", "h"),)
    assert cell.targets == (target("label", "y", "class"),)
    assert cell.equations == BASE_EQUATIONS
    assert (cell.loss, cell.loss_mode) == ("J", "every")
    assert {name: v.dim for name, v in cell.nodes.items()} == {"z": "h", "h": "h", "y": "y", "J": "1"}


def test_default_name_and_title() -> None:
    assert parse(BASE, "elman.cell", default_name="elman").name == "elman"
    titled = parse('cell elman "  Elman RNN  "\n' + BASE)
    assert (titled.name, titled.title) == ("elman", "Elman RNN")
    untitled = parse('cell elman ""\n' + BASE)
    assert (untitled.name, untitled.title) == ("elman", "elman")


@pytest.mark.parametrize(
    ("line", "mode"),
    [("loss: last step", "last"), ("loss: every step", "every"), ("loss : last  step  # many-to-one", "last")],
    ids=["last", "every", "spaced-with-comment"],
)
def test_loss_mode(line: str, mode: str) -> None:
    assert parse(edit(1, line)).loss_mode == mode


def test_state_may_start_at_explicit_zero_or_no_value() -> None:
    for decl in ("state h[h] = 0", "state h[h] = 0.0", "state h[h]"):
        cell = parse(edit(3, f"input x[x]; {decl}; target label: class(y)"))
        assert cell.states == (Vector("h", "h"),)


def test_one_minus_a_vector_is_a_ones_matrix_term() -> None:
    cell = parse(edit(5, "h = 1 - tanh(z)"))
    ones = sp.OneMatrix(dim_symbol("h"), 1)
    assert cell.equation("h").rhs == sp.MatAdd(ones, sp.MatMul(sp.S.NegativeOne, Tanh(z_t)))
    assert cell.equation("h").rhs.has(sp.OneMatrix)


def test_a_number_plus_a_vector_scales_ones() -> None:
    cell = parse(edit(5, "h = tanh(z) + 2"))
    assert cell.equation("h").rhs == sp.MatAdd(Tanh(z_t), sp.MatMul(2, sp.OneMatrix(dim_symbol("h"), 1)))


def test_star_of_two_vectors_is_hadamard() -> None:
    cell = parse(edit(5, "h = sigmoid(z) * tanh(z)"))
    rhs = cell.equation("h").rhs
    assert isinstance(rhs, Hadamard)
    assert rhs == Hadamard(Sigmoid(z_t), Tanh(z_t))


@pytest.mark.parametrize(
    ("rhs", "factor"),
    [
        ("tanh(2 * z)", 2),
        ("tanh(0.5 z)", sp.Rational(1, 2)),
        ("tanh(z * 3)", 3),
        ("tanh(2 * 3 z)", 6),
        ("tanh(-z)", -1),
    ],
    ids=["2-star-z", "0.5-z", "z-star-3", "numbers-multiply", "negation"],
)
def test_numbers_scale_vectors(rhs: str, factor: sp.Number) -> None:
    cell = parse(edit(5, f"h = {rhs}"))
    assert cell.equation("h").rhs == Tanh(sp.MatMul(factor, z_t))


def test_numbers_after_a_matrix_vector_product_scale_it() -> None:
    cell = parse(edit(4, "z = W_xh x * 2 + W_hh h[t-1] + b_h"))
    assert cell.equation("z").rhs == sp.MatAdd(sp.MatMul(2, W_xh, x_t), sp.MatMul(W_hh, h_prev), b_h)


def test_semicolons_separate_statements() -> None:
    one_line = (
        "param W_xh[h, x], W_hh[h, h], W_hy[y, h], b_h[h], b_y[y]; input x[x]; state h[h] = 0; "
        "target label: class(y); z = W_xh x + W_hh h[t-1] + b_h; h = tanh(z); y = W_hy h + b_y; "
        "J = cross_entropy(softmax(y), label);"
    )
    assert parse(one_line) == parse(BASE)


def test_comments_anywhere_and_parentheses_spanning_lines() -> None:
    text = """\
# a comment before everything

param W_xh[h,   # rows
           x], W_hh[h, h],  W_hy[  # a bracket continues the line
  y, h], b_h[h], b_y[y]  # trailing comment
# between declarations
input x[x]   # the input
state h[h] = 0 # comment without a space
target label: class(y)
   # an indented comment
z = (W_xh x    # input term
     # a whole comment line inside the parentheses
     + W_hh h[t-1]
     + b_h)
h = tanh(
  z
)
y = W_hy h + b_y#no space
J = cross_entropy(
    softmax(y),  # prediction
    label,  # target
)"""
    with pytest.raises(SpecError):
        parse(text)  # a trailing comma leaves an empty argument
    assert parse(text.replace("label,  # target", "label  # target")) == parse(BASE)


def test_continued_line_without_parentheses_is_two_statements() -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(4, "z = W_xh x + W_hh h[t-1]\n    + b_h"))
    assert (e.value.line, e.value.col) == (5, 5)


LSTM = """\
# lstm.cell
cell lstm "LSTM"
param W_f[h, x], U_f[h, h], b_f[h]
param W_i[h, x], U_i[h, h], b_i[h]
param W_o[h, x], U_o[h, h], b_o[h]
param W_g[h, x], U_g[h, h], b_g[h]
param W_y[y, h], b_y[y]
input x[x]
state h[h] = 0, c[h] = 0
target label: class(y)
f = sigmoid(W_f x + U_f h[t-1] + b_f)
i = sigmoid(W_i x + U_i h[t-1] + b_i)
o = sigmoid(W_o x + U_o h[t-1] + b_o)
g = tanh(W_g x + U_g h[t-1] + b_g)
c = f * c[t-1] + i * g
h = o * tanh(c)
y = W_y h + b_y
J = cross_entropy(softmax(y), label)
"""


def test_lstm_with_two_states() -> None:
    cell = parse(LSTM)
    assert cell.name == "lstm"
    assert tuple(s.name for s in cell.states) == ("h", "c")
    assert cell.states == (Vector("h", "h"), Vector("c", "h"))
    assert cell.dims == ("x", "h", "y")
    assert [e.name for e in cell.equations] == ["f", "i", "o", "g", "c", "h", "y", "J"]
    f_t, i_t, o_t, g_t, c_t = (vec(n, "h") for n in "fiogc")
    assert cell.equation("c").rhs == sp.MatAdd(Hadamard(f_t, vec("c", "h", "t-1")), Hadamard(i_t, g_t))
    assert cell.equation("h").rhs == Hadamard(o_t, Tanh(c_t))
    W_f, U_f, b_f = mat("W_f", "h", "x"), mat("U_f", "h", "h"), mat("b_f", "h")
    assert cell.equation("f").rhs == Sigmoid(sp.MatAdd(sp.MatMul(W_f, x_t), sp.MatMul(U_f, h_prev), b_f))
    assert cell.loss == "J"


def test_lstm_state_at_t_is_the_value_computed_at_this_step() -> None:
    assert parse(LSTM.replace("h = o * tanh(c)", "h = o * tanh(c[t])")) == parse(LSTM)


def test_lstm_state_used_before_computed() -> None:
    with pytest.raises(SpecError) as e:
        parse(LSTM.replace("f = sigmoid(W_f x + U_f h[t-1] + b_f)", "f = sigmoid(W_f x + U_f h + b_f)"))
    assert (e.value.line, e.value.col) == (11, 25)
    assert "h[t-1]" in e.value.message
    with pytest.raises(SpecError) as e:
        parse(LSTM.replace("c = f * c[t-1] + i * g", "c = f * c + i * g"))
    assert (e.value.line, e.value.col) == (15, 9)
    assert "c[t-1]" in e.value.message


def test_squared_error_with_a_real_target() -> None:
    text = edit(3, "input x[x]; state h[h] = 0; target r[y]").replace(
        "J = cross_entropy(softmax(y), label)", "J = squared_error(y, r)"
    )
    cell = parse(text)
    assert cell.targets == (target("r", "y", "real"),)
    loss = cell.equation("J").rhs
    assert isinstance(loss, SquaredError)
    assert loss == SquaredError(y_t, vec("r", "y"))
    assert cell.loss == "J"


# ---- no user text is evaluated ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "pos"),
    [
        ("__import__('os').system('touch {marker}')", (4, 16)),
        ('__import__("os").system("touch {marker}")', (4, 21)),
        ('eval("__import__(1)")', (4, 5)),
        ("exec", (4, 5)),
    ],
    ids=["import-single-quotes", "import-double-quotes", "eval-call", "exec-name"],
)
def test_user_text_is_never_evaluated(tmp_path, capfd, expr: str, pos: tuple[int, int]) -> None:
    marker = tmp_path / "pwned"
    text = edit(4, "z = " + expr.format(marker=marker) + " + W_xh x + W_hh h[t-1] + b_h")
    with pytest.raises(SpecError) as e:
        parse(text)
    assert (e.value.line, e.value.col) == pos, str(e.value)
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []
    assert "pwned" not in capfd.readouterr().out


def _forbid(monkeypatch) -> list[str]:
    calls: list[str] = []

    def forbidden(name: str):
        def call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called while parsing a spec: {args[:1]!r}")

        return call

    monkeypatch.setattr(builtins, "eval", forbidden("eval"))
    monkeypatch.setattr(builtins, "exec", forbidden("exec"))
    monkeypatch.setattr(sympy_parser, "parse_expr", forbidden("parse_expr"))
    return calls


def test_parse_calls_neither_eval_nor_exec_nor_parse_expr(monkeypatch) -> None:
    rnn_text = (CELLS / "rnn.cell").read_text()
    calls = _forbid(monkeypatch)
    cell = parse(BASE)
    lstm = parse(LSTM)
    rnn = parse(rnn_text, "rnn.cell", "rnn")
    monkeypatch.undo()
    assert calls == []
    assert cell.equations == BASE_EQUATIONS
    assert lstm.name == "lstm" and rnn.name == "rnn"


def test_bad_spec_calls_neither_eval_nor_exec(monkeypatch) -> None:
    calls = _forbid(monkeypatch)
    with pytest.raises(SpecError):
        parse(edit(4, "z = __import__('os').system('echo pwned')"))
    monkeypatch.undo()
    assert calls == []


def test_numeric_literals_are_not_evaluated(monkeypatch) -> None:
    calls = _forbid(monkeypatch)
    try:
        parse(edit(5, "h = 1 - 0.5 tanh(z)"))
    finally:
        monkeypatch.undo()
    assert calls == []


def test_non_ascii_digit_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(5, "h = \u0663 * tanh(z)"))  # ARABIC-INDIC DIGIT THREE
    assert (e.value.line, e.value.col) == (5, 5)


# ---- regressions: bugs found in review, now fixed ---------------------------------------------


def test_loss_used_as_an_operand_is_an_error() -> None:
    with pytest.raises(SpecError) as e:
        parse(BASE + "q = tanh(J)\n")
    assert e.value.line == 8


def test_state_updated_by_a_loss_is_an_error() -> None:
    text = """\
param W_xh[h, x], W_hh[h, h], W_hy[y, h]
input x[x]; state h[h] = 0; target l: class(y)
z = W_xh x + W_hh h[t-1]
y = W_hy z
h = cross_entropy(softmax(y), l)
"""
    with pytest.raises(SpecError) as e:
        parse(text)
    assert e.value.line == 5


def test_matrix_times_parenthesized_vector() -> None:
    cell = parse(edit(4, "z = W_xh x + W_hh (h[t-1] + b_h)"))
    assert cell.equation("z").rhs == sp.MatAdd(sp.MatMul(W_xh, x_t), sp.MatMul(W_hh, sp.MatAdd(h_prev, b_h)))


@pytest.mark.parametrize("scaled", ["2 * W_xh x", "2 W_xh x"], ids=["star", "juxtaposed"])
def test_number_times_matrix_vector_product(scaled: str) -> None:
    cell = parse(edit(4, f"z = {scaled} + W_hh h[t-1] + b_h"))
    assert cell.equation("z").rhs == sp.MatAdd(sp.MatMul(2, W_xh, x_t), sp.MatMul(W_hh, h_prev), b_h)


def test_unclosed_parenthesis_is_reported_on_its_line() -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(5, "h = tanh(z"))
    assert e.value.line == 5


PRECEDENCE = [
    # a minus sign takes the whole product after it
    ("z = -W_xh x + W_hh h[t-1] + b_h", "z", lambda W_xh, W_hh, x, h, b: -1 * W_xh * x + W_hh * h + b),
    # * is elementwise between whole products: u * U h[t-1] is u * (U h[t-1])
    ("z = b_h * W_hh h[t-1] + W_xh x", "z", lambda W_xh, W_hh, x, h, b: Hadamard(b, W_hh * h) + W_xh * x),
    ("z = W_hh h[t-1] * b_h + W_xh x", "z", lambda W_xh, W_hh, x, h, b: Hadamard(W_hh * h, b) + W_xh * x),
    # side by side, products read from the right: W_hh W_hh h[t-1] is W_hh (W_hh h[t-1])
    ("z = W_hh W_hh h[t-1] + W_xh x + b_h", "z", lambda W_xh, W_hh, x, h, b: W_hh * (W_hh * h) + W_xh * x + b),
    ("z = 2 W_xh x + W_hh h[t-1] - 0.5 * b_h", "z", lambda W_xh, W_hh, x, h, b: 2 * W_xh * x + W_hh * h - b / 2),
]


@pytest.mark.parametrize("line, name, expected", PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_precedence_reads_like_the_maths(line, name, expected):
    cell = parse(edit(4, line))
    W_xh, W_hh = (cell.param(n).symbol for n in ("W_xh", "W_hh"))
    x, h = sp.MatrixSymbol("x@t", *W_xh.shape[::-1][:1], 1), sp.MatrixSymbol("h@t-1", W_hh.shape[0], 1)
    b = cell.param("b_h").symbol
    got = cell.equation(name).rhs
    want = expected(W_xh, W_hh, x, h, b)
    assert sp.simplify(sp.expand(got - want)) == sp.ZeroMatrix(*got.shape) or got == want, (got, want)


@pytest.mark.parametrize(
    "convert",
    [lambda t: t.replace("\n", "\r\n"), lambda t: t.replace("\n", "\r"), lambda t: "\ufeff" + t],
    ids=["crlf", "cr-only", "utf8-bom"],
)
def test_line_endings_and_a_byte_order_mark_read_the_same(convert):
    assert parse(convert(BASE)) == parse(BASE)
    with pytest.raises(SpecError) as e:  # and positions still count lines and columns as a reader does
        parse(convert(edit(5, "h = gelu(z)")))
    assert (e.value.line, e.value.col) == (5, 5)


def test_losses_are_weighted_and_added_in_one_flat_sum():
    J = parse(edit(7, "J = 0.5 (cross_entropy(softmax(y), label) + 2 * cross_entropy(softmax(y), label))"))
    rhs = J.equation("J").rhs
    ce = CrossEntropy(
        Softmax(sp.MatrixSymbol("y@t", dim_symbol("y"), 1)), sp.MatrixSymbol("label@t", dim_symbol("y"), 1)
    )
    assert rhs == sp.MatAdd(sp.MatMul(sp.Rational(1, 2), ce), ce)
    assert parse(edit(7, "J = 0.25 cross_entropy(softmax(y), label)")).equation("J").rhs == sp.MatMul(
        sp.Rational(1, 4), ce
    )


# ---- E^T: the transpose of a matrix parameter, and nothing else -----------------------------

TIED = BASE.replace("W_hy[y, h]", "E[h, y]").replace("y = W_hy h + b_y", "y = E^T h + b_y")


def test_a_transposed_matrix_parameter_is_a_transpose_of_its_symbol() -> None:
    cell = parse(TIED)
    E = mat("E", "h", "y")
    assert cell.equation("y").rhs == sp.MatAdd(sp.MatMul(sp.Transpose(E), h_t), b_y)


@pytest.mark.parametrize(
    ("line", "new", "message"),
    [
        (
            4,
            "z = W_xh x + W_hh h[t-1] + b_h^T",
            "4:31: b_h^T: only a matrix parameter can be transposed (as in E^T), and b_h is a vector parameter",
        ),
        (
            4,
            "z = W_xh x^T + W_hh h[t-1] + b_h",
            "4:11: x^T: only a matrix parameter can be transposed (as in E^T), and x is an input",
        ),
        (
            4,
            "z = W_xh x + W_hh h[t-1]^T + b_h",
            "4:25: h[t-1]^T: only a matrix parameter can be transposed (as in E^T), and h is a state",
        ),
        (
            5,
            "h = tanh(z^T)",
            "5:11: z^T: only a matrix parameter can be transposed (as in E^T), "
            "and z is a node (computed by an equation)",
        ),
        (
            4,
            "z = (W_xh x)^T + W_hh h[t-1] + b_h",
            "4:13: (...)^T: only a matrix parameter can be transposed (as in E^T), not a parenthesised expression",
        ),
        (
            4,
            "z = (W_hh)^T h[t-1] + W_xh x + b_h",
            "4:11: (...)^T: only a matrix parameter can be transposed (as in E^T), not a parenthesised expression",
        ),
        (5, "h = tanh(z)^T", "5:12: ^T: only a matrix parameter can be transposed (as in E^T), not a vector of size h"),
        (
            4,
            "z = 2^T W_xh x + W_hh h[t-1] + b_h",
            "4:6: ^T: only a matrix parameter can be transposed (as in E^T), not a number",
        ),
        (4, "z = W_xh x + W_hh^T^T h[t-1] + b_h", "4:20: a matrix is transposed once: write E or E^T"),
        (4, "z = W_xh x + W_hh^2 h[t-1] + b_h", "4:19: expected T after '^' (E^T is the transpose of E), got '2'"),
        (4, "z = W_xh x + W_hh^ h[t-1] + b_h", "4:20: expected T after '^' (E^T is the transpose of E), got 'h'"),
    ],
    ids=[
        "vector-parameter",
        "input",
        "previous-state",
        "node",
        "parenthesised-expression",
        "parenthesised-parameter",
        "function-value",
        "number",
        "twice",
        "not-T",
        "nothing-after-caret",
    ],
)
def test_a_transpose_of_anything_but_a_matrix_parameter_is_refused_at_its_caret(line, new, message) -> None:
    with pytest.raises(SpecError) as e:
        parse(edit(line, new), "bad.cell")
    assert str(e.value) == f"bad.cell:{message}"


def test_a_transposed_matrix_must_fit_its_operand() -> None:
    """W_xh^T is (x, h): next to a vector of size x it is a shape mismatch, named with the transposed shape."""
    with pytest.raises(SpecError) as e:
        parse(edit(4, "z = W_xh x + W_hh h[t-1] + b_h + W_xh^T x"), "bad.cell")
    assert str(e.value) == (
        "bad.cell:4:41: shape mismatch: a matrix (x, h) times a vector of size x; it needs a vector of size h"
    )
