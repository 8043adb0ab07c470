"""Reading further back: h[t-k] and x[t-k] become delay lines of hidden states; what cannot be read
further back is refused at its file:line:col with one line."""

import pytest
import sympy as sp

from derive.ir.cell import Delay, dim_symbol
from derive.spec.lexer import SpecError
from derive.spec.parser import parse

HEAD = """\
param W[h, x], U[h, h], V[y, h]
input x[x]; state h[h] = 0; target label: class(y)
"""
TAIL = "y = V h\nJ = cross_entropy(softmax(y), label)\n"


def cell_with(update: str):
    return parse(HEAD + update + "\n" + TAIL, "lags.cell")


def vec(name: str, dim: str, step: str) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(f"{name}@{step}", dim_symbol(dim), 1)


def test_h_two_back_and_x_one_back_are_delay_states_after_the_declared_ones():
    cell = cell_with("h = tanh(W x + W x[t-1] + U h[t-1] + U h[t-2])")
    assert [s.name for s in cell.states] == ["h", "_h_lag1", "_x_lag0"]
    assert cell.delays == (Delay("_h_lag1", "h", source="h", lag=1), Delay("_x_lag0", "x", source="x", lag=0))
    assert [s.name for s in cell.declared_states] == ["h"]
    # h'_t = h_{t-1}: h[t-2] is h'_{t-1};  x'_t = x_t: x[t-1] is x'_{t-1}
    assert cell.equation("_h_lag1").rhs == vec("h", "h", "t-1")
    assert cell.equation("_x_lag0").rhs == vec("x", "x", "t")
    reads = cell.equation("h").rhs.atoms(sp.MatrixSymbol)
    assert {vec("_h_lag1", "h", "t-1"), vec("_x_lag0", "x", "t-1"), vec("h", "h", "t-1")} <= reads


def test_three_back_is_a_line_of_two_each_holding_the_one_before():
    cell = cell_with("h = tanh(W x[t-2] + U h[t-3])")
    assert [(d.name, d.lag) for d in cell.delays] == [("_h_lag1", 1), ("_h_lag2", 2), ("_x_lag0", 0), ("_x_lag1", 1)]
    assert cell.equation("_h_lag2").rhs == vec("_h_lag1", "h", "t-1")
    assert cell.equation("_x_lag1").rhs == vec("_x_lag0", "x", "t-1")
    assert {s.name for s in cell.equation("h").rhs.atoms(sp.MatrixSymbol)} == {"W", "U", "_x_lag1@t-1", "_h_lag2@t-1"}


def test_one_line_serves_every_read_of_a_name():
    cell = cell_with("h = tanh(W x + U h[t-2] + U h[t-2])")
    assert [d.name for d in cell.delays] == ["_h_lag1"]


def test_x_at_t_and_h_at_t_minus_1_add_no_state():
    cell = cell_with("h = tanh(W x[t] + U h[t-1])")
    assert cell.delays == ()
    assert {s.name for s in cell.equation("h").rhs.atoms(sp.MatrixSymbol)} == {"W", "x@t", "U", "h@t-1"}


def test_the_furthest_back_allowed_parses():
    cell = cell_with("h = tanh(W x + U h[t-64])")
    assert len(cell.delays) == 63 and cell.delays[-1].lag == 63


BAD = [
    # (id, the update of h, "line:col: message", exactly)
    (
        "step-t-minus-0",
        "h = tanh(W x + U h[t-0])",
        "3:22: h[t-0] is step t itself: write h for this step's value or h[t-1] for the previous step's",
    ),
    (
        "step-t-plus-0",
        "h = tanh(W x[t+0] + U h[t-1])",
        "3:16: x[t+0] is step t itself: write x for this step's value or x[t-1] for the previous step's",
    ),
    ("future-input", "h = tanh(W x[t+1] + U h[t-1])", "3:15: x[t+1] refers to the future: a cell may read x[t-1] or x"),
    ("too-far-back", "h = tanh(W x + U h[t-65])", "3:20: h[t-65]: a cell may read at most 64 steps back, h[t-64]"),
    (
        "absurdly-far-back",
        "h = tanh(W x + U h[t-99999999999999999999])",
        "3:20: h[t-99999999999999999999]: a cell may read at most 64 steps back, h[t-64]",
    ),
    (
        "a-target",
        "h = tanh(W x + U h[t-1] + V label[t-1])",
        "3:29: label[t-1]: only a state or an input has earlier steps, and 'label' is a target",
    ),
    (
        "a-parameter",
        "h = tanh(W x + U h[t-1] + W[t-2] x)",
        "3:27: W[t-2]: only a state or an input has earlier steps, and 'W' is a parameter",
    ),
    (
        "a-computed-node",
        "z = W x\nh = tanh(z[t-2] + U h[t-1])",
        "4:10: z[t-2]: only a state or an input has earlier steps, and 'z' is computed anew at each step: "
        "declare it a state to read its earlier values",
    ),
    (
        "a-node-computed-later",
        "h = tanh(W x + U h[t-1] + U q[t-1])\nq = U h",
        "3:29: q[t-1]: only a state or an input has earlier steps, and 'q' is computed anew at each step: "
        "declare it a state to read its earlier values",
    ),
    (
        "undefined",
        "h = tanh(W x + U h[t-1] + U g[t-2])",
        "3:29: g[t-2]: only a state or an input has earlier steps, and 'g' is not defined",
    ),
    (
        "the-gradient-of-a-delay",
        "h = tanh(W x + U h[t-2])\nd_h_lag1 = U h",
        "4:1: 'd_h_lag1' would share a name with the gradient of the delay line that h[t-2] reads; rename it",
    ),
]


@pytest.mark.parametrize(("update", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_what_cannot_be_read_further_back_is_refused_on_one_line(update, expected):
    with pytest.raises(SpecError) as e:
        cell_with(update)
    assert str(e.value) == f"lags.cell:{expected}"


def test_the_loss_has_no_earlier_steps():
    text = HEAD + "h = tanh(W x + U h[t-1])\ny = V h\nJ = cross_entropy(softmax(y), label)\nq = U h + J[t-1]\n"
    with pytest.raises(SpecError) as e:
        parse(text, "lags.cell")
    assert str(e.value) == "lags.cell:6:11: J[t-1]: only a state or an input has earlier steps, and 'J' is the loss"
