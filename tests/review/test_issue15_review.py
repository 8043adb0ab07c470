"""A sceptical review of issue 15's spec forms: each test states the behaviour the tool should have and
is marked ``xfail(strict=True)`` with the defect it reproduces (D1, D2, ...: the review's report), so
the fast tier stays green while the defect stands and fails (XPASS) once it is fixed: then drop the
marker.  Each spec here is the smallest found; probes/ holds the cells the review ran by hand."""

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

ELMAN = """cell review "an Elman cell"
param W[h, x], U[h, h], V[y, h]
input x[x]; state h[h] = 0; target r[y]
h = tanh(W x + U h[t-1])
"""
LOGIT = 2000.0  # as tests/emit/numpy/test_stable.py: sigmoid(800) rounds to 1 in float64
RTOL = 1e-12


def defect(tag: str, what: str, raises: type[BaseException] | tuple[type[BaseException], ...] | None = None):
    return pytest.mark.xfail(strict=True, reason=f"{tag}: {what}", raises=raises)


def _verify(tmp_path, spec: str, *extra: str) -> int:
    path = tmp_path / "review.cell"
    path.write_text(spec)
    return cli.main(["verify", "--cell", str(path), "--steps", "2", *extra])


# ---- D1: a number divided by a loss is read as the number times the loss (a silently wrong loss) -------


@defect("D1", "J = 1 / sum(exp(y)) is accepted and derived as J = sum(exp(y)) (builder.Builder.losses)")
@pytest.mark.parametrize("loss", ["1 / sum(exp(y))", "2 / squared_error(y, r)"])
def test_a_number_divided_by_a_loss_is_refused_not_multiplied(loss):
    with pytest.raises(SpecError) as e:
        parse(ELMAN + f"y = V h\nJ = {loss}\n")
    assert (e.value.line, e.value.col) == (6, 5)


# ---- D2: the proof cannot cancel a sum of constants against its reciprocal: a traceback -----------


@defect("D2", "AssertionError: the efficient recurrence does not match the expansion (adjoint._equal)", AssertionError)
def test_a_leaky_cell_with_one_minus_rate_and_its_reciprocal_is_derived():
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", "rate = 0.2\nh = tanh((1 - rate) * W x + U h[t-1] / (1 - rate))")
    d = derive(parse(spec + "y = V h\nJ = squared_error(y, r)\n"), 2)
    assert not d.equivalence.failures


# ---- D3, D4: sum(...) forms whose generated fast path does not run -----------------------------------


@defect("D3", "SyntaxError in the module: dV = ... + 1.T @ h_rows (BatchedPrinter, a ones vector)", SyntaxError)
def test_the_sum_of_a_weight_times_a_state_is_derived_and_verified(tmp_path):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(V h)\n") == 0


@defect("D4", "AttributeError in the module: (1 * 1).sum(...) for d sum(log softmax(y))/dy", AttributeError)
def test_the_sum_of_log_softmax_is_derived_and_verified(tmp_path):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(log(softmax(y)))\n") == 0


# ---- D5: a loss term of the parameters only (weight decay): the fast path counts it once --------------


@defect("D5", "MISMATCH, exit 1: the fast path adds sum(c * c) once, not at every step of every sequence")
def test_a_penalty_on_a_parameter_in_the_loss_is_derived_or_refused_in_one_line(tmp_path):
    spec = ELMAN.replace("V[y, h]", "V[y, h], c[y]")
    assert _verify(tmp_path, spec + "y = V h + c\nJ = squared_error(y, r) + 0.01 * sum(c * c)\n") in (0, 2)


# ---- D6, D7: binary cross-entropy of a named p = sigmoid(y) where the logits saturate ----------------


def _saturated(spec: str, name: str):
    m = load_module(module_source(derive(parse(spec), 2)), name)
    rng = np.random.default_rng(3)
    params = m.init_params(3, 4, 5, seed=1)
    params["V"] = params["V"] * LOGIT / np.abs(params["V"]).sum(axis=1, keepdims=True)
    return m, params, rng.standard_normal((2, 3)), rng.uniform(0, 1, (2, 5))


@defect("D6", "3 * binary_cross_entropy(p, r) of a named p: the loss comes from the logits, its gradient is NaN")
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


@defect("D7", "gradients_by_definition of binary_cross_entropy(p, r), p = sigmoid(y) named: NaN gradients")
def test_by_definition_gradients_of_a_named_sigmoid_stay_finite_as_the_inline_ones_do():
    spec = ELMAN + "y = V h\np = sigmoid(y)\nJ = binary_cross_entropy(p, r)\n"
    m, params, xs, r = _saturated(spec, "review_bce_named_by_definition")
    with np.errstate(all="ignore"):
        _, grads = m.gradients_by_definition(params, xs, r)
    assert all(np.isfinite(g).all() for g in grads.values())


# ---- D8: bptt flow on a corpus cell prints nan -------------------------------------------------------


@defect("D8", "bptt flow: |dJ_T/ds_T| nan at scales 2 and 4 (evaluator: BCE of a named p from p, not the logits)")
def test_flow_of_a_named_sigmoid_binary_cross_entropy_is_finite(tmp_path, capsys):
    cell = str(CORPUS / "multilabel_named.cell")
    with np.errstate(all="ignore"):
        assert cli.main(["flow", "--cell", cell, "--out", str(tmp_path)]) == 0
    assert "nan" not in capsys.readouterr().out


# ---- D9: a ⊘ (b ∘ c) printed without its parentheses --------------------------------------------------

_n = sp.Symbol("n_h")
_a, _b, _c = (sp.MatrixSymbol(f"{s}@t", _n, 1) for s in "abc")
_DIVIDED = Hadamard(_a, Reciprocal(Hadamard(_b, _c)))


@defect("D9", r"LaTeX prints a ⊘ (b ∘ c) as a_{t} \oslash b_{t} \odot c_{t}")
def test_latex_of_a_divisor_that_is_a_product_is_bracketed():
    assert latex(_DIVIDED) == r"a_{t} \oslash \left(b_{t} \odot c_{t}\right)"


@defect("D9", "the module's comments print a ⊘ (b ∘ c) as a_t / b_t ⊙ c_t")
def test_text_of_a_divisor_that_is_a_product_is_bracketed():
    assert text(_DIVIDED) == "a_t / (b_t ⊙ c_t)"


# ---- D10: constants named as the document's own symbols -----------------------------------------------


@defect("D10", r"accepted: j prints as \prod_{j=1}^{t} j diag(...), g as g^T -> g (g^T ...), J beside the loss J")
@pytest.mark.parametrize("name", ["j", "k", "g", "J"])
def test_a_constant_named_as_a_symbol_of_the_document_is_refused(name):
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", f"{name} = 0.5\nh = {name} * tanh(W x + U h[t-1])")
    loss = "L" if name == "J" else "J"
    with pytest.raises(SpecError) as e:
        parse(spec + f"y = V h\n{loss} = squared_error(y, r)\n")
    assert (e.value.line, e.value.col) == (4, 1)


# ---- D11: a function outside its domain on the check's problem is called a bug of ours -------------------


@defect("D11", "sqrt of a negative number on the check's problem: 'it reads a work array before writing it'")
def test_a_square_root_of_negative_values_is_not_blamed_on_the_work_arrays(tmp_path, capsys):
    path = tmp_path / "review.cell"
    path.write_text(ELMAN.replace("tanh(", "sqrt(") + "y = V h\nJ = squared_error(y, r)\n")
    with np.errstate(all="ignore"):
        cli.main(["emit", "--cell", str(path), "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "work array" not in err and "bug in bptt-derive" not in err


# ---- D12: constants refused as names of the generated code, which never holds a constant ----------------


@defect("D12", "'lambda' is reserved for the generated code: a constant is printed there by its value")
@pytest.mark.parametrize("name", ["lambda", "np"])
def test_a_constant_may_have_a_name_the_code_reserves(name):
    spec = ELMAN.replace("h = tanh(W x + U h[t-1])", f"{name} = 0.5\nh = {name} * tanh(W x + U h[t-1])")
    parse(spec + "y = V h\nJ = squared_error(y, r)\n")


# ---- D14: the fast path subtracts a product that prints as a sum without its parentheses -------------


@defect("D14", "MISMATCH, exit 1: dy = 1 - r - softmax(y) * sum(r), for 1 - (r - softmax(y) sum(r))")
def test_a_sum_minus_a_soft_target_cross_entropy_is_derived_and_verified(tmp_path):
    assert _verify(tmp_path, ELMAN + "y = V h\nJ = sum(y) - sum(r * log(softmax(y)))\n") == 0


@defect("D14", "truncated: dy = y - r - r - softmax(y) * sum(r), for y - r - (r - softmax(y) sum(r))")
def test_a_soft_target_cross_entropy_beside_a_squared_error_is_derived_truncated(tmp_path):
    spec = ELMAN + "y = V h\nJ = -sum(r * log(softmax(y))) + squared_error(y, r)\n"
    assert _verify(tmp_path, spec, "--truncate", "1") == 0
