"""bptt check: hand-written gradient code, right and wrong, and what the report says about it.

tests/user_code/minchar.py holds min-char-rnn's lossFun and variants that each get one thing
wrong; tests/user_code/generic.py the generic signature.  Every wrong variant must be diagnosed
as what it is, and the right ones accepted."""

from __future__ import annotations

import pytest

from conftest import CORPUS, USER_CODE
from derive import cli
from derive.ir.cell import load_builtin
from derive.spec.parser import read
from derive.tools.check.load import CheckError
from derive.tools.check.report import CHECK_RTOL, check

MINCHAR = USER_CODE / "minchar.py"
GENERIC = USER_CODE / "generic.py"
RECURRENT = ("W_xh", "W_hh", "b_h")  # the parameters whose gradient flows back through the state
ELMAN = ("W_xh", "W_hh", "W_hy", "b_h", "b_y")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(report) -> dict[str, object]:
    return {r.name: r for r in report.rows}


@pytest.mark.parametrize(
    "target",
    [
        f"{MINCHAR}:lossFun",
        pytest.param(f"{MINCHAR}:lossFun_weights_as_arguments", marks=pytest.mark.slow),
        pytest.param(f"{GENERIC}:elman", marks=pytest.mark.slow),
    ],
    ids=["minchar-globals", "minchar-arguments", "generic"],
)
def test_right_code_is_accepted(target, capsys):
    code, out, err = run(capsys, target)
    assert code == 0 and err == ""
    assert out.strip().endswith("all gradients match")
    report = check(target, load_builtin("elman"))
    assert [r.name for r in report.rows] == ["loss", *ELMAN]
    assert all(r.ok and r.error <= 1e-12 for r in report.rows)  # float64 rounding only


# (function, the parameters it gets wrong, a phrase the diagnosis of each must contain)
WRONG = [
    ("lossFun_no_recurrence", RECURRENT, "keeps only the k = t terms"),
    ("lossFun_no_tanh_derivative", RECURRENT, "leaves an activation's derivative out"),
    ("lossFun_truncated", RECURRENT, "truncates BPTT to 2 steps"),
    ("lossFun_wrong_step", ("W_hh",), "with the state of the wrong step"),
    ("lossFun_swapped", ("W_hh",), "transposes the gradient"),
    ("lossFun_clipped", ELMAN, "is clipped to [-0.05, 0.05]"),
]


FAST_WRONG = {"lossFun_no_recurrence"}  # a second or more each: the others are in the slow tier


@pytest.mark.parametrize(
    "function, wrong, says",
    [pytest.param(*w, marks=() if w[0] in FAST_WRONG else pytest.mark.slow) for w in WRONG],
    ids=[w[0] for w in WRONG],
)
def test_each_mistake_is_diagnosed_as_itself(function, wrong, says, capsys):
    report = check(f"{MINCHAR}:{function}", load_builtin("elman"))
    by_name = rows(report)
    assert not report.passed
    for name in ELMAN:
        assert by_name[name].ok == (name not in wrong), name
    for name in wrong:
        assert says in by_name[name].diagnosis, (name, by_name[name].diagnosis)
        assert by_name[name].error > 100 * CHECK_RTOL
    code, out, err = run(capsys, f"{MINCHAR}:{function}")
    assert code == 1 and err == ""
    assert "some gradients do not match" in out and "bptt derive --cell elman --steps 9 writes elman_T9.tex" in out


SOFTPLUS = CORPUS / "softplus.cell"


def test_a_new_activation_is_checked_and_its_missing_derivative_diagnosed():
    """softplus is one record in derive/ir/ops.py: bptt check knows its derivative, and its absence."""
    assert check(f"{GENERIC}:softplus", read(SOFTPLUS)).passed
    report = check(f"{GENERIC}:softplus_no_slope", read(SOFTPLUS))
    for name in ELMAN:
        assert rows(report)[name].ok == (name not in RECURRENT), name
    says = rows(report)["W_hh"].diagnosis
    assert says.startswith("leaves an activation's derivative out (softplus': uses dJ/dh where dJ/da = diag(f'(a))")


@pytest.mark.slow
def test_a_diagnosis_points_at_the_missing_term():
    report = check(f"{MINCHAR}:lossFun_no_recurrence", load_builtin("elman"))
    says = rows(report)["W_hh"].diagnosis
    assert 'the terms with k < t of each sum over k in "The chain-rule expansions" of elman_T9.tex' in says


@pytest.mark.slow
def test_a_nan_is_wrong_not_ok(capsys):
    report = check(f"{GENERIC}:nan_gradient", load_builtin("elman"))
    assert not report.passed and rows(report)["W_hh"].diagnosis == "has NaN or infinite entries"
    assert run(capsys, f"{GENERIC}:nan_gradient")[0] == 1


def test_code_that_writes_into_its_arguments_does_not_corrupt_the_check():
    assert check(f"{GENERIC}:writes_into_its_arguments", load_builtin("elman")).passed


@pytest.mark.slow
def test_a_transposed_shape_is_named():
    report = check(f"{GENERIC}:elman_swapped_input", load_builtin("elman"))
    says = rows(report)["W_xh"].diagnosis
    assert says == "has shape (4, 5), the transpose of (5, 4): the outer product's factors are swapped"
    assert [r.name for r in report.rows if not r.ok] == ["W_xh"]


@pytest.mark.slow
def test_a_loss_averaged_over_the_steps_is_a_convention_not_a_mistake():
    report = check(f"{MINCHAR}:lossFun_mean", load_builtin("elman"))
    assert report.passed and "loss averaged over the T steps (its gradients compared times that)" in report.found


def test_an_unknown_mistake_says_where_it_starts():
    report = check(f"{GENERIC}:elman_wrong_slope", load_builtin("elman"))
    says = rows(report)["W_xh"].diagnosis
    assert says.startswith("matches none of the usual mistakes; it is wrong already at T = 1")


@pytest.mark.slow  # the LSTM, checked twice
def test_a_cell_with_two_states_takes_two_initial_values():
    report = check(f"{USER_CODE / 'lstm.py'}:lstm", load_builtin("lstm"))
    assert report.passed and len(report.rows) == 1 + 14
    half = rows(check(f"{USER_CODE / 'lstm.py'}:lstm_half", load_builtin("lstm")))
    assert half["U_f"].diagnosis == "is 1/2 of the right gradient (a 1/2 in the loss)"


def test_the_seed_model_takes_min_char_rnn_with_its_biases_set_to_zero():
    report = check(f"{MINCHAR}:lossFun", load_builtin("rnn"))
    assert report.passed and [r.name for r in report.rows] == ["loss", "W_xh", "W_hh", "W_hy"]
    assert report.unchecked == ["bh", "by"]


def test_names_map_with_dash_dash_map(capsys):
    code, out, _ = run(capsys, f"{GENERIC}:goodfellow", "--map", "U=W_xh,W=W_hh,V=W_hy,b=b_h,c=b_y")
    assert code == 0 and "all gradients match" in out
    code, _, err = run(capsys, f"{GENERIC}:goodfellow")
    assert code == 2 and "give your names with --map NAME=PARAM" in err


BAD_USAGE = [
    (["nowhere.py:lossFun"], "nowhere.py: no such file"),
    ([f"{MINCHAR}:nope"], "no function 'nope' (it defines: lossFun, lossFun_no_recurrence"),
    ([str(MINCHAR)], "expected FILE.py:FUNCTION"),
    ([f"{MINCHAR}:lossFun_three_values"], "lossFun_three_values returned no gradient of W_hy, b_h, b_y that bptt"),
    ([f"{GENERIC}:raises"], "raises (" + str(GENERIC) + ":55) raised KeyError: 'no such weight'"),
    ([f"{GENERIC}:exits"], "exits (" + str(GENERIC) + ":65) raised SystemExit: 0"),
    ([f"{GENERIC}:string_gradient"], "string_gradient: its gradient b_h is not an array of real numbers (a str)"),
    ([f"{MINCHAR}:lossFun", "--map", "Wxh"], "--map: expected NAME=PARAM pairs"),
    ([f"{MINCHAR}:lossFun", "--map", "Wxh=W_q"], "the cell has no parameter 'W_q'"),
    ([f"{MINCHAR}:lossFun", "--steps", "0,2"], "--steps: expected integers from 1 to 20"),
    ([f"{MINCHAR}:lossFun", "--cell", "gru"], "lossFun: it runs under none of the 96 conventions tried"),
    ([f"{MINCHAR}:lossFun", "--cell", "lstm"], "lossFun: none of its names is W_f, U_f, b_f, W_i, U_i, b_i, W_o"),
]


@pytest.mark.parametrize("args, message", BAD_USAGE, ids=[str(i) for i in range(len(BAD_USAGE))])
def test_bad_usage_is_one_line_and_exit_2(args, message, capsys):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_a_file_that_does_not_import_is_reported_at_its_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\n\ndef lossFun(inputs, targets, hprev)\n    return 0\n")
    code, _, err = run(capsys, f"{broken}:lossFun")
    assert code == 2 and err.startswith(f"bptt: error: {broken}:3:") and "expected ':'" in err
    raising = tmp_path / "raising.py"
    raising.write_text("raise RuntimeError('needs the data file')\n")
    code, _, err = run(capsys, f"{raising}:lossFun", "--import")
    assert code == 2 and "importing it raised RuntimeError: needs the data file" in err


PYTHON2 = {
    "print": ("x = 1\nprint 'x', x\n", 2, "a print statement"),
    "except": ("try:\n    pass\nexcept ValueError, e:\n    pass\n", 3, "except E, e:"),
    "octal": ("mode = 0777\n", 1, "an octal literal such as 0777"),
    "raise": ("raise ValueError, 'bad'\n", 1, "raise E, message"),
    "not-equal": ("if 1 <> 2:\n    pass\n", 1, "the <> operator"),
}


@pytest.mark.parametrize("source, line, sign", PYTHON2.values(), ids=PYTHON2)
def test_a_python_2_file_is_named_as_one_at_its_line(source, line, sign, tmp_path, capsys):
    old = tmp_path / "old.py"
    old.write_text(source)
    code, _, err = run(capsys, f"{old}:lossFun")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        err.startswith(f"bptt: error: {old}:{line}:")
        and f"this file is Python 2 ({sign}); bptt check reads Python 3" in err
    )


def test_a_python_2_min_char_rnn_is_named_as_one(capsys):
    code, _, err = run(capsys, f"{USER_CODE / 'py2_minchar.py'}:lossFun")
    assert code == 2 and "py2_minchar.py:19:5: this file is Python 2 (a print statement)" in err


def test_a_python_3_syntax_error_is_not_called_python_2(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def lossFun(:\n    pass\n")
    code, _, err = run(capsys, f"{broken}:lossFun")
    assert code == 2 and "Python 2" not in err and err.startswith(f"bptt: error: {broken}:1:")


def test_the_user_code_prints_nothing_into_the_report(tmp_path, capsys):
    chatty = tmp_path / "chatty.py"
    body = "    return _loss_fun(inputs, targets, hprev)\n"
    chatty.write_text(MINCHAR.read_text().replace(body, "    print('hello')\n" + body, 1))
    code, out, _ = run(capsys, f"{chatty}:lossFun")
    assert code == 0 and "hello" not in out


def test_check_rejects_cells_it_does_not_take_yet():
    from derive.spec.parser import read

    with pytest.raises(CheckError, match="one input and one target at every step"):
        check(f"{MINCHAR}:lossFun", read(CORPUS / "multi_task.cell"))


@pytest.mark.parametrize("target", [f"{MINCHAR}:lossFun", f"{USER_CODE / 'one_sequence.py'}:forward,backward"])
def test_check_refuses_a_cell_that_reads_further_back_rather_than_misjudge_it(target):
    from derive.spec.parser import read

    with pytest.raises(CheckError) as e:
        check(target, read(CORPUS / "narx.cell"))
    assert str(e.value) == (
        f"{CORPUS / 'narx.cell'}:6:42: bptt check does not take a cell that reads further back than the previous "
        "step (h[t-2]) yet; bptt derive writes and verifies its gradients"
    )


REGRESS = USER_CODE / "regress.py"


def test_a_cell_with_real_targets_is_checked_too():
    cell = read(CORPUS / "state_loss.cell")
    report = check(f"{REGRESS}:regress", cell)
    assert report.passed and [r.name for r in report.rows] == ["loss", "W", "U", "b"]
    wrong = check(f"{REGRESS}:regress_no_recurrence", cell)
    assert [r.name for r in wrong.rows if not r.ok] == ["W", "U", "b"]
    assert all(r.diagnosis.startswith("keeps only the k = t terms") for r in wrong.rows if not r.ok)


BIND = USER_CODE / "bind.py"
LAYERS = USER_CODE / "layers.py"


@pytest.mark.parametrize("function", ["lossFun", "loss_hprev_last", "loss_positional_only"])
def test_arguments_are_bound_by_name_in_any_position(function):
    report = check(f"{BIND}:{function}", load_builtin("elman"))
    assert report.passed and [r.name for r in report.rows] == ["loss", *ELMAN]


def test_a_layer_object_that_keeps_its_gradients_on_itself_time_first():
    report = check(f"{LAYERS}:ElmanLayer.forward,ElmanLayer.backward", load_builtin("elman"))
    assert report.passed and [r.name for r in report.rows] == ["forward", "W_xh", "W_hh", "b_h", "x"]
    assert report.found == [
        "inputs (T, N, D), time first",
        "weights stored (out, in)",
        "names: W_in = W_xh, W_rec = W_hh, bias = b_h",
        "starts from h0 = 0",
    ]


@pytest.mark.slow  # the GRU's derivation
def test_a_gru_layer_with_its_gates_packed_in_its_own_order():
    report = check(f"{LAYERS}:GRULayer.forward,GRULayer.backward", load_builtin("gru"))
    assert report.passed and "gates packed u, r, n in Wx, Wh, b" in report.found


def test_a_class_named_alone_is_bad_usage_that_lists_its_methods(capsys):
    code, _, err = run(capsys, f"{LAYERS}:GRULayer")
    assert code == 2 and "'GRULayer' is a class: name one of its methods (GRULayer.forward, GRULayer.backward)" in err


def test_a_layer_over_one_sequence_returning_a_dict():
    report = check(f"{USER_CODE / 'one_sequence.py'}:forward,backward", load_builtin("elman"))
    assert report.passed and [r.name for r in report.rows] == ["forward", "W_xh", "W_hh", "b_h", "h0", "x"]
    assert report.found[0] == "inputs (T, D), one sequence"


BATCHED = USER_CODE / "batched.py"


def test_a_loss_over_a_batch_averaged_over_n_t_is_a_convention():
    report = check(f"{BATCHED}:Model.loss", load_builtin("elman"))
    assert report.passed and report.found == [
        "inputs as indices (N, T), a batch",
        "vectors as rows (N, n)",
        "weights stored (in, out)",
        "names: Wx = W_xh, Wh = W_hh, b = b_h, Wy = W_hy",
        "starts from the given h0",
        "loss averaged over N·T (its gradients compared times that)",
    ]
    wrong = check(f"{BATCHED}:Model.loss_sum_grads", load_builtin("elman"))
    assert [r.name for r in wrong.rows if not r.ok] == list(ELMAN)
    assert all(r.diagnosis.startswith("is 63 times the right gradient") for r in wrong.rows if not r.ok)  # N·T = 7·9


TIED = USER_CODE / "tied.py"


@pytest.mark.parametrize("function", ["tied", "tied_rows"])
def test_tied_embeddings_are_checked_with_both_shares_of_the_tied_weight(function):
    """E used as E x and E^T h: its gradient is the sum of both shares, in either orientation."""
    report = check(f"{TIED}:{function}", read(CORPUS / "tied.cell"))
    assert report.passed and [r.name for r in report.rows] == ["loss", "E", "U"]
    assert all(r.error <= 1e-12 for r in report.rows)


def test_a_tied_weight_missing_its_transposed_share_is_wrong():
    report = check(f"{TIED}:tied_forgets_output", read(CORPUS / "tied.cell"))
    assert [r.name for r in report.rows if not r.ok] == ["E"]
