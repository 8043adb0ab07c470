"""A sceptical review of issue 15's spec forms found these defects (D1, D2, ...: the review's report);
each test states the behaviour the tool has now.  Each spec here is the smallest the review found."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from conftest import CORPUS
from derive import cli
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.emit.printing import latex, text
from derive.ir.exprs import Hadamard
from derive.ir.ops import Reciprocal
from derive.spec.lexer import SpecError
from derive.spec.parser import parse
from derive.verify.report import load_module
from derive.verify.selfcheck import READ_BEFORE_WRITE

ELMAN = """cell review "an Elman cell"
param W[h, x], U[h, h], V[y, h]
input x[x]; state h[h] = 0; target r[y]
h = tanh(W x + U h[t-1])
"""
LOGIT = 2000.0  # as tests/emit/numpy/test_stable.py: sigmoid(800) rounds to 1 in float64
RTOL = 1e-12


def _verify(tmp_path, spec: str, *extra: str) -> int:
    path = tmp_path / "review.cell"
    path.write_text(spec)
    return cli.main(["verify", "--cell", str(path), "--steps", "2", *extra])


# ---- D1: a number divided by a loss is read as the number times the loss (a silently wrong loss) -------


@pytest.mark.parametrize("loss", ["1 / sum(exp(y))", "2 / squared_error(y, r)"])
def test_a_number_divided_by_a_loss_is_refused_not_multiplied(loss):
    with pytest.raises(SpecError) as e:
        parse(ELMAN + f"y = V h\nJ = {loss}\n")
    assert (e.value.line, e.value.col) == (6, 7)  # the '/', as every operator's refusal
    assert e.value.message == "cannot divide by a loss: a loss is weighted by a number (J / 2, 0.5 * J)"


# ---- D2: the proof cannot cancel a sum of constants against its reciprocal: a traceback -----------


def test_a_leaky_cell_with_one_minus_rate_and_its_reciprocal_is_derived():
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", "rate = 0.2\nh = tanh((1 - rate) * W x + U h[t-1] / (1 - rate))")
    d = derive(parse(spec + "y = V h\nJ = squared_error(y, r)\n"), 2)
    assert not d.equivalence.failures


# ---- D3, D4: sum(...) forms whose generated fast path does not run -----------------------------------


def test_the_sum_of_a_weight_times_a_state_is_refused_and_derived_once_named(tmp_path, capsys):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(V h)\n") == 2
    assert capsys.readouterr().err.endswith(
        "review.cell:6:5: sum(...) of a matrix product or a softmax as it stands: name it first (a = V h; J = sum(a))\n"
    )
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(y)\n") == 0


def test_the_sum_of_log_softmax_is_refused_and_derived_once_named(tmp_path):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(log(softmax(y)))\n") == 2
    assert _verify(tmp_path, ELMAN + "y = V h\nq = log(softmax(y))\nJ = sum(q)\n") == 0


# ---- D5: a loss term of the parameters only (weight decay): the fast path counts it once --------------


def test_a_penalty_on_a_parameter_in_the_loss_is_refused_in_one_line(tmp_path, capsys):
    spec = ELMAN.replace("V[y, h]", "V[y, h], c[y]")
    assert _verify(tmp_path, spec + "y = V h + c\nJ = squared_error(y, r) + 0.01 * sum(c * c)\n") == 2
    assert capsys.readouterr().err.endswith(
        "review.cell:6:34: sum(...) reads no value of a step: J_t would add it at every step; a loss reads the step\n"
    )


# ---- D6, D7: binary cross-entropy of a named p = sigmoid(y) where the logits saturate ----------------


def _saturated(spec: str, name: str):
    m = load_module(module_source(derive(parse(spec), 2)), name)
    rng = np.random.default_rng(3)
    params = m.init_params(3, 4, 5, seed=1)
    params["V"] = params["V"] * LOGIT / np.abs(params["V"]).sum(axis=1, keepdims=True)
    return m, params, rng.standard_normal((2, 3)), rng.uniform(0, 1, (2, 5))


def test_a_weighted_binary_cross_entropy_of_a_named_sigmoid_keeps_finite_gradients():
    spec = ELMAN + "y = V h\np = sigmoid(y)\nJ = 3 * binary_cross_entropy(p, r)\n"
    m, params, xs, r = _saturated(spec, "review_bce_weighted")
    hs, h = [], np.zeros(4)
    for x in xs:
        h = np.tanh(params["W"] @ x + params["U"] @ h)
        hs.append(h)
    ys = [params["V"] @ h for h in hs]
    assert max(np.abs(y).max() for y in ys) > 100  # the probabilities saturate
    loss, grads = m.loss_and_gradients(params, xs, r)
    dV = 3 * sum(np.outer(np.exp(-np.logaddexp(0, -y)) - r[t], hs[t]) for t, y in enumerate(ys))
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert np.abs(grads["V"] - dV).max() <= RTOL * np.abs(dV).max()


def test_by_definition_gradients_of_a_named_sigmoid_are_nan_where_it_saturates_as_the_module_says():
    """The by-definition path is the chain rule written out, dJ/dp dp/dy with p itself: 0/0 where p
    rounds to 0 or 1.  The module says so; the fast path collapses the pair to p - r."""
    spec = ELMAN + "y = V h\np = sigmoid(y)\nJ = binary_cross_entropy(p, r)\n"
    m, params, xs, r = _saturated(spec, "review_bce_named_by_definition")
    with np.errstate(all="ignore"):
        _, grads = m.gradients_by_definition(params, xs, r)
        _, fast = m.loss_and_gradients(params, xs, r)
    assert not np.isfinite(grads["V"]).all() and all(np.isfinite(g).all() for g in fast.values())
    assert "p = sigmoid(y) rounds to 0 or 1 its gradients are NaN" in " ".join(m.__doc__.split())


# ---- D8: bptt flow on a corpus cell prints nan -------------------------------------------------------


def test_flow_of_a_named_sigmoid_binary_cross_entropy_is_finite(tmp_path, capsys):
    cell = str(CORPUS / "multilabel_named.cell")
    with np.errstate(all="ignore"):
        assert cli.main(["flow", "--cell", cell, "--out", str(tmp_path)]) == 0
    assert "nan" not in capsys.readouterr().out


# ---- D9: a ⊘ (b ∘ c) printed without its parentheses --------------------------------------------------

_n = sp.Symbol("n_h")
_a, _b, _c = (sp.MatrixSymbol(f"{s}@t", _n, 1) for s in "abc")
_DIVIDED = Hadamard(_a, Reciprocal(Hadamard(_b, _c)))


def test_latex_of_a_divisor_that_is_a_product_is_bracketed():
    assert latex(_DIVIDED) == r"a_{t} \oslash \left(b_{t} \odot c_{t}\right)"


def test_text_of_a_divisor_that_is_a_product_is_bracketed():
    assert text(_DIVIDED) == "a_t / (b_t ⊙ c_t)"


# ---- D10: constants named as the document's own symbols -----------------------------------------------


@pytest.mark.parametrize("name", ["j", "k", "g", "J", "n_h"])
def test_a_constant_named_as_a_symbol_of_the_document_is_refused(name):
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", f"{name} = 0.5\nh = {name} * tanh(W x + U h[t-1])")
    loss = "L" if name == "J" else "J"
    with pytest.raises(SpecError) as e:
        parse(spec + f"y = V h\n{loss} = squared_error(y, r)\n")
    assert (e.value.line, e.value.col) == (4, 1)


# ---- D11: a function outside its domain on the check's problem is called a bug of ours -------------------


def test_a_square_root_of_negative_values_is_not_blamed_on_the_work_arrays(tmp_path, capsys):
    path = tmp_path / "review.cell"
    path.write_text(ELMAN.replace("tanh(", "sqrt(") + "y = V h\nJ = squared_error(y, r)\n")
    with np.errstate(all="ignore"):
        cli.main(["emit", "--cell", str(path), "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert READ_BEFORE_WRITE not in err and "bug in bptt-derive" not in err
    assert "not finite on the check's random problem at T = 2, whatever the work arrays hold" in err


# ---- D12: constants refused as names of the generated code, which never holds a constant ----------------


@pytest.mark.parametrize("name", ["lambda", "np"])
def test_a_constant_may_have_a_name_the_code_reserves(name):
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", f"{name} = 0.5\nh = {name} * tanh(W x + U h[t-1])")
    parse(spec + "y = V h\nJ = squared_error(y, r)\n")


# ---- D14: the fast path subtracts a product that prints as a sum without its parentheses -------------


def test_a_sum_minus_a_soft_target_cross_entropy_is_derived_and_verified(tmp_path):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(y) - sum(r * log(softmax(y)))\n") == 0


def test_a_soft_target_cross_entropy_beside_a_squared_error_is_derived_truncated(tmp_path):
    spec = ELMAN + "y = V h\nJ = -sum(r * log(softmax(y))) + squared_error(y, r)\n"
    assert _verify(tmp_path, spec, "--truncate", "1") == 0
