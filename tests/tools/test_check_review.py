"""bptt check on probes a review wrote against it (tests/user_code/review/): code whose mistakes an
inferred convention could hide, and code in shapes the first version misread.  None may be called
right while it is wrong, and none may be blamed for what it does not do."""

from __future__ import annotations

import pytest

from conftest import USER_CODE
from derive import cli
from derive.ir.cell import load_builtin
from derive.tools.check.load import CheckError
from derive.tools.check.report import check

REVIEW = USER_CODE / "review"


@pytest.fixture(autouse=True)
def in_review(monkeypatch):
    monkeypatch.chdir(REVIEW)  # the probes import each other (from static import Elman)


def wrong(report) -> list[str]:
    return [r.name for r in report.rows if not r.ok]


def test_a_forward_that_ignores_h0_with_a_backward_that_reads_it_is_wrong():
    report = check("a2_fwd_ignores.py:lossFun", load_builtin("elman"))
    assert wrong(report) == ["W_hh"]
    assert "starts from h0 = 0 (it ignores the initial state it is given)" in report.found


def test_code_without_a_loss_that_ignores_h0_is_checked_from_zero_and_only_its_mistake_is_wrong():
    report = check("a3_noloss_ignores.py:lossFun", load_builtin("elman"))
    assert wrong(report) == ["W_hh"]
    assert "starts from h0 = 0 (it ignores the initial state it is given)" in report.found


def test_code_without_a_loss_keeps_the_convention_most_gradients_agree_with():
    report = check("a6.py:grads", load_builtin("elman"))
    assert wrong(report) == ["W_hh", "W_hy"] and "starts from the given h0" in report.found


def test_a_layer_that_ignores_h0_must_return_a_zero_gradient_of_it():
    report = check("layers1.py:fwd_zero,bwd_zero", load_builtin("elman"))
    assert wrong(report) == ["W_hh", "h0"]


@pytest.mark.parametrize(
    "backward, bad",
    [("bwd_dict", []), ("bwd_no_dh0", []), ("bwd_bad_dh0", ["h0"]), ("bwd_bad_dx", ["x"])],
)
def test_a_layers_h0_and_inputs_gradients_are_compared_where_returned(backward, bad):
    report = check(f"layers1.py:fwd_ok,{backward}", load_builtin("elman"))
    assert wrong(report) == bad
    assert ("h0: not returned by the backward, not checked" in report.notes) == (backward == "bwd_no_dh0")


def test_a_wrong_forward_is_compared_under_its_closest_convention_and_said():
    report = check("layers1.py:fwd_bug,bwd_bug", load_builtin("elman"))
    assert "forward" in wrong(report) and report.found[0] == "inputs (N, T, D), batch first"
    assert "its forward matches the cell's under no convention tried: compared under the closest" in report.found


@pytest.mark.parametrize(
    "target", ["twocls.py:Other2.forward,Other.backward", "static.py:rnn_forward_only_h,Layer.backward"]
)
def test_a_forward_and_a_backward_of_different_owners_are_refused(target):
    with pytest.raises(CheckError, match="a forward and a backward are two functions, or two methods of one class"):
        check(target, load_builtin("elman"))


@pytest.mark.parametrize("target", ["static.py:Elman.lossFun", "lefton.py:Net.step", "gdict2.py:lossFun"])
def test_static_methods_gradients_left_on_the_object_and_global_dicts_are_read(target):
    assert check(target, load_builtin("elman")).passed


@pytest.mark.slow  # the LSTM's derivation
def test_gradients_of_equal_shape_read_by_their_order_are_said():
    report = check("lstm_order.py:lossFun", load_builtin("lstm"))
    assert "Wf, Wi, Wo, Wg: their gradients read by their order (their shapes are equal)" in report.found


def test_a_class_made_without_its_init_says_why_when_it_then_fails(capsys):
    code = cli.main(["check", "cls.py:CharRNN.loss_and_grads"])
    err = capsys.readouterr().err
    assert code == 2 and "(made without running CharRNN.__init__ (bptt check cannot give its optimizer, seed))" in err


def test_a_top_level_training_run_is_not_run(capsys):
    report = check("trainer.py:lossFun", load_builtin("elman"))
    assert report.passed and [s.line for s in report.skipped] == [16]
