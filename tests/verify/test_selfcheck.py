"""The self-check every module passes before it is written: poisoned work arrays, two calls
bitwise identical, the fast path against finite differences and the by-definition path.

It runs here over every built-in and corpus cell (truncated too), and a module with a
planted read-before-write or built from a planted wrong rule is refused at emit: exit 1,
one line, nothing written.
"""

import dataclasses
import functools

import pytest
import sympy as sp

from conftest import ALL_CELLS, load_cell
from derive import cli
from derive.cli import job
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.ir.exprs import add, neg
from derive.ir.ops import Tanh
from derive.verify.report import load_module
from derive.verify.selfcheck import SelfCheckError, check_steps, self_check

CELLS = ALL_CELLS


@functools.cache
def source(cell: str, steps: int, truncate: int | None = None) -> str:
    return module_source(derive(load_cell(cell), steps, truncate))


def module(text: str):
    return load_module(text, "checked")


def check(text: str, cell: str = "rnn") -> None:
    self_check(text, load_cell(cell))


@pytest.mark.parametrize(
    "truncate",
    [None, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)],
    ids=["full", "K1", "K2"],
)
@pytest.mark.parametrize(
    "cell",
    [pytest.param(c, marks=[pytest.mark.slow] if c.startswith("corpus/") else []) for c in CELLS],
    ids=[c.split("/")[-1] for c in CELLS],
)
def test_every_cell_passes_the_self_check(cell, truncate):
    self_check(source(cell, 3, truncate), load_cell(cell))


@pytest.mark.slow  # three derivations
def test_the_steps_checked_include_the_derived_t_and_both_sides_of_the_truncation():
    assert check_steps(module(source("rnn", 3))) == [3]
    assert check_steps(module(source("rnn", 5, 2))) == [2, 3, 5]  # K, K + 1, the by-definition path at 5
    assert check_steps(module(source("rnn", 8, 5))) == [3, 6]  # min(K, 3), K + 1
    assert check_steps(module(source("rnn", 25))) == [3]  # no by-definition path beyond T = 20


# ---- planted defects ---------------------------------------------------------------------

INITIAL_STATE = "    h[0] = h0\n"


def test_a_read_before_a_write_is_caught():
    planted = source("rnn", 3).replace(INITIAL_STATE, "")  # h[0] never written, read at t = 1
    with pytest.raises(SelfCheckError, match=r"^J: loss_and_gradients is not finite at T = 3 \(it reads a work array"):
        check(planted)


def test_a_read_masked_from_nan_is_caught_by_the_second_poison():
    masked = "    h[0] = np.fmax(h[0], h0)  # NaN-blind: fmax(NaN, x) is x\n"
    planted = source("rnn", 3).replace(INITIAL_STATE, masked)
    with pytest.raises(SelfCheckError, match=r"two calls of loss_and_gradients differ at T = 3"):
        check(planted)


def test_a_crash_of_the_module_is_caught():
    planted = source("rnn", 3).replace("np.tanh(", "_missing_helper(", 1)
    with pytest.raises(SelfCheckError, match=r"^loss_and_gradients raised NameError: name '_missing_helper'"):
        check(planted)


def test_a_wrong_gradient_is_caught_by_finite_differences():
    planted = source("rnn", 3).replace("dW_hh = ", "dW_hh = 1.001 * ", 1)
    with pytest.raises(SelfCheckError, match=r"^dJ/dW_hh: loss_and_gradients differs from gradients_by_definition"):
        check(planted)
    past_definition = source("rnn", 7).replace("dW_hh = ", "dW_hh = 1.001 * ", 1)
    with pytest.raises(SelfCheckError, match=r"^dJ/dW_hh: loss_and_gradients differs from finite differences"):
        check(past_definition)


def test_a_missing_or_misshaped_gradient_is_caught():
    dropped = source("rnn", 3).replace('"W_hh": dW_hh, ', "", 1)
    with pytest.raises(SelfCheckError, match=r"^loss_and_gradients returns gradients for \['W_hy', 'W_xh', 'h0'\]"):
        check(dropped)
    transposed = source("rnn", 3).replace('"W_hh": dW_hh, ', '"W_hh": dW_hh[:1], ', 1)
    with pytest.raises(SelfCheckError, match=r"^dJ/dW_hh: loss_and_gradients returns shape \(1, 5\), not \(5, 5\)"):
        check(transposed)


def test_a_gradient_that_a_later_call_overwrites_is_caught():
    """A gradient written into an array the module keeps: right in value, but the next call changes it."""
    kept = "_KEPT = {}\n\n\ndef loss_and_gradients("
    into = "dW_hh = np.matmul(dz_rows.T, h_rows_prev, out=_KEPT.setdefault(W_hh.shape, np.empty_like(W_hh)))"
    planted = (
        source("rnn", 3).replace("def loss_and_gradients(", kept, 1).replace("dW_hh = dz_rows.T @ h_rows_prev", into, 1)
    )
    assert planted.count("_KEPT") == 2
    with pytest.raises(
        SelfCheckError, match=r"^dJ/dW_hh: a later call of loss_and_gradients changed the array it returned"
    ):
        check(planted)


def test_a_gradient_wrong_for_one_sequence_alone_is_caught():
    """B = 1 multiplies by W_hh as it is, B > 1 by its Fortran-ordered copy: a wrong B = 1 form."""
    right = "_W_hh_F = _fortran(W_hh, _W_hh_F) if B > 1 else W_hh\n"
    planted = source("rnn", 3).replace(right, right.replace("else W_hh", "else W_hh.T"), 1)
    assert planted != source("rnn", 3)
    with pytest.raises(SelfCheckError, match=r"loss_and_gradients differs from its sequences one at a time"):
        check(planted)


LENGTHS_DEFECTS = {
    "held": ("np.copyto(h[t], h[t - 1], where=_lengths.held[t])", "pass"),  # sequences start from step 1's state
    "loss": (", live=_live)", ")"),  # the steps before a sequence's first counted in the loss
    "seeds": ("if _lengths is not None:  # lengths: the steps before", "if False:  #"),  # and sending gradient back
    "cut": ("_cut(dh_next, _starts[t], dh0_acc)", "pass"),  # the initial state's gradient taken at step 1
}


@pytest.mark.parametrize("defect", LENGTHS_DEFECTS, ids=list(LENGTHS_DEFECTS))
def test_a_wrong_lengths_path_is_caught(defect):
    """Each part of the lengths path left out: the batched call with lengths differs from its sequences
    run alone at their own lengths, and the module is refused."""
    right, wrong = LENGTHS_DEFECTS[defect]
    planted = source("rnn", 3).replace(right, wrong, 1)
    assert planted != source("rnn", 3)
    with pytest.raises(SelfCheckError, match=r"differs from its sequences one at a time at their own lengths \[3, 1\]"):
        check(planted)


def test_a_module_that_does_not_load_is_one_line():
    with pytest.raises(SelfCheckError, match=r"^the module broke its check: SyntaxError: .*$"):
        check(source("rnn", 3).replace("def loss(", "def loss((", 1))


def test_truncation_that_cuts_in_the_wrong_place_is_caught_against_sympy():
    planted = source("rnn", 8, 3).replace("max(loss_t - TRUNCATE, 0)", "max(loss_t - TRUNCATE - 1, 0)", 1)
    assert planted != source("rnn", 8, 3)
    with pytest.raises(SelfCheckError, match=r"differs from SymPy's truncated chain rule \(K = 2, T = 3\)"):
        check(planted)


@pytest.fixture
def wrong_tanh_rule(monkeypatch):
    """d tanh(a)/da = diag(1 - h), not diag(1 - h^2): wrong, and the same everywhere it is used."""
    wrong = dataclasses.replace(Tanh.op, slope=lambda a, h: add(sp.OneMatrix(*h.shape), neg(h)))
    monkeypatch.setattr(Tanh, "op", wrong)


def _refused(bptt, tmp_path, argv, gradient):
    result = bptt(*argv, "--out", tmp_path / "out")
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith(f"bptt: error: {cli.SELF_CHECK_FAILED}: {gradient}: ")
    assert line.endswith(f". {cli.REPORT_IT}")
    assert not (tmp_path / "out").exists()


def test_emit_refuses_a_module_from_a_wrong_rule(bptt, tmp_path, wrong_tanh_rule):
    _refused(bptt, tmp_path, ["emit"], "dJ/dW_xh")


def test_the_default_job_refuses_it_too_and_writes_no_document(bptt, tmp_path, wrong_tanh_rule):
    _refused(bptt, tmp_path, ["--no-pdf"], "dJ/dW_xh")


@pytest.mark.parametrize("steps, truncate", [(3, 2), (5, 1), (8, 3)])
def test_a_wrong_rule_is_refused_with_truncation_too(bptt, tmp_path, wrong_tanh_rule, steps, truncate):
    """Finite differences see the rules at T = min(K, 3), where every truncated run reaches step 1."""
    _refused(bptt, tmp_path, ["emit", "--steps", steps, "--truncate", truncate], "dJ/dW_xh")


def test_emit_refuses_a_module_with_a_read_before_a_write(bptt, tmp_path, monkeypatch):
    planted = source("rnn", 3).replace(INITIAL_STATE, "")
    monkeypatch.setattr(job, "module_source", lambda derivation: planted)
    _refused(bptt, tmp_path, ["emit"], "J")
