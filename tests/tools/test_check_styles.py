"""bptt check on code as people write it, with no wrapper: the fixtures in tests/user_code/styles/
(written for these tests in the styles of min-char-rnn, a class-based port of it, the WildML
tutorial, cs231n's rnn_layers, Deep Learning from Scratch 2's common/ package and the
deeplearning.ai course).  Right code is accepted with its conventions said in the report's first
lines; each mistake is diagnosed as itself.  The checks run from the styles folder, as a user
runs them from theirs (common/ is imported from the current directory)."""

from __future__ import annotations

import sys

import pytest

from conftest import USER_CODE
from derive import cli

STYLES = USER_CODE / "styles"


@pytest.fixture(autouse=True)
def in_styles(monkeypatch):
    """Run from the styles folder, and leave no module of it imported."""
    monkeypatch.chdir(STYLES)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "common" or name.startswith("common."):
            del sys.modules[name]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def found(out: str) -> list[str]:
    """The report's "found" lines, one convention each."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  found: "))
    said = [lines[start][len("  found: ") :]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 9) or line.startswith(" " * 12):
            break
        said.append(line.strip())
    return said


MLFS_MAP = ("--map", "U=W_xh,W=W_hh,V=W_hy")
ACCEPTED = [
    (
        ["min_char_rnn.py:lossFun"],
        [
            "inputs as a list of indices",
            "vectors as columns (n, 1)",
            "weights stored (out, in)",
            "starts from the given h0",
        ],
    ),
    (
        ["min_char_rnn_class.py:RNN.train"],
        [
            "inputs as a list of indices",
            "vectors as columns (n, 1)",
            "weights stored (out, in)",
            "made without running RNN.__init__ (bptt check cannot give its learning_rate)",
            "starts from the given h0",
        ],
    ),
    (
        ["rnn_numpy.py:RNNNumpy.bptt", "--cell", "rnn", "--map", "U=W_xh,V=W_hy,W=W_hh", "--truncate", "5"],
        [
            "inputs as a list of indices",
            "weights stored (out, in)",
            "names: U = W_xh, V = W_hy, W = W_hh",
            "starts from h0 = 0",
        ],
    ),
    (
        ["rnn_layers.py:rnn_forward,rnn_backward"],
        [
            "inputs (N, T, D), batch first",
            "weights stored (in, out)",
            "names: Wx = W_xh, Wh = W_hh, b = b_h",
            "starts from the given h0",
        ],
    ),
    pytest.param(
        ["rnn_layers.py:lstm_forward,lstm_backward", "--cell", "lstm"],
        [
            "inputs (N, T, D), batch first",
            "weights stored (in, out)",
            "gates packed i, f, o, g in Wx, Wh, b",
            "starts from the given h0 and c0 = 0",
        ],
        marks=pytest.mark.slow,
    ),
    (
        ["common/time_layers.py:TimeRNN.forward,TimeRNN.backward"],
        [
            "inputs (N, T, D), batch first",
            "weights stored (in, out)",
            "names: Wx = W_xh, Wh = W_hh, b = b_h",
            "starts from h0 = 0",
        ],
    ),
    pytest.param(
        ["common/time_layers.py:TimeLSTM.forward,TimeLSTM.backward", "--cell", "lstm"],
        [
            "inputs (N, T, D), batch first",
            "weights stored (in, out)",
            "gates packed f, g, i, o in Wx, Wh, b",
            "starts from h0 = c0 = 0",
        ],
        marks=pytest.mark.slow,
    ),
    (
        ["dlai_rnn.py:rnn_forward,rnn_backward"],
        [
            "inputs (D, N, T), time last",
            "weights stored (out, in)",
            "names: Wax = W_xh, Waa = W_hh, ba = b_h",
            "starts from the given h0",
        ],
    ),
    (
        ["mlfs/rnn_layer.py:RNN.forward_pass,RNN.backward_pass", "--cell", "rnn", *MLFS_MAP, "--truncate", "6"],
        [
            "inputs (N, T, D), batch first",
            "returns the output layer's y at every step",
            "weights stored (out, in)",
            "names: U = W_xh, W = W_hh, V = W_hy",
            "starts from h0 = 0",
        ],
    ),
    pytest.param(
        ["dlai_rnn.py:lstm_forward,lstm_backward", "--cell", "lstm"],
        [
            "inputs (D, N, T), time last",
            "weights stored (out, in)",
            "names: Wf = [U_f W_f], Wi = [U_i W_i], Wo = [U_o W_o], Wc = [U_g W_g], bc = b_g",
            "starts from the given h0 and c0 = 0",
        ],
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("args, conventions", ACCEPTED, ids=lambda v: v[0] if isinstance(v, list) else "")
def test_right_code_in_each_style_is_accepted_and_its_conventions_said(args, conventions, capsys):
    code, out, err = run(capsys, *args)
    assert (code, err) == (0, ""), out + err
    assert found(out) == conventions
    assert out.rstrip().endswith("all gradients match")


def test_a_script_is_checked_without_running_its_io_or_its_training_loop(capsys):
    code, out, _ = run(capsys, "min_char_rnn.py:lossFun")
    assert code == 0
    assert out.splitlines()[1] == (
        "  not run: line 21: data = open('input.txt', 'r').read() (reads a file); "
        "line 24: print('%d characters in the text, %d distinct' % (data_si... (a call); "
        "line 97: while True: ... (a loop); "
        "and 10 that need what those define (lines 22, 23, 25, 26, 32, 34, 36, 94, 95, 96)"
    )


def test_a_layer_is_checked_on_its_states_the_gradients_of_its_weights_h0_and_its_inputs(capsys):
    _, out, _ = run(capsys, "rnn_layers.py:rnn_forward,rnn_backward")
    rows = [line.split()[0] for line in out.splitlines() if line.endswith(" ok")]
    assert rows == ["forward", "W_xh", "W_hh", "b_h", "h0", "x"]


FIRST_STEP = (
    "W_hh: is wrong only at the first step: the outer product at t = 1 uses h_T, the last state, where h_0 "
    "belongs (an array indexed h[t-1] reads h[-1] at t = 1)"
)
NO_CARRY = "W_xh, W_hh, b_h: keeps only the k = t terms: the gradient does not flow back through the state"
LSTM = "W_f, U_f, b_f, W_i, U_i, b_i, W_o, U_o, b_o, W_g, U_g, b_g"

WRONG = [
    (["min_char_rnn_class.py:RNNAliased.train"], FIRST_STEP),
    (["rnn_layers.py:rnn_forward,rnn_backward_no_carry"], NO_CARRY),
    (
        ["rnn_layers.py:rnn_forward,rnn_backward_transposed"],
        "W_xh: has shape (4, 5), the transpose of (5, 4): the outer product's factors are swapped",
    ),
    (
        ["mlfs/rnn_layer.py:RNNWrongStep.forward_pass,RNNWrongStep.backward_pass", "--cell", "rnn", *MLFS_MAP]
        + ["--truncate", "6"],
        "W_hh: takes the outer product with the state of the wrong step (h_t where h_{t-1} belongs)",
    ),
    pytest.param(
        ["rnn_layers.py:lstm_forward,lstm_backward_no_cell_carry", "--cell", "lstm"],
        f"{LSTM}: does not carry the gradient back through c (the carried dc_next is missing)",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        ["common/time_layers.py:TimeLSTMNoTanhGrad.forward,TimeLSTMNoTanhGrad.backward", "--cell", "lstm"],
        f"{LSTM}: leaves tanh'(c_t) out of h = o_t ⊙ tanh(c_t) (the factor 1 - tanh(c_t)^2)",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        ["dlai_rnn.py:lstm_forward,lstm_backward_no_carry", "--cell", "lstm"],
        f"{LSTM}: keeps only the k = t terms: the gradient does not flow back through the state",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("args, says", WRONG, ids=lambda v: v[0] if isinstance(v, list) else "")
def test_each_mistake_in_each_style_is_diagnosed_as_itself(args, says, capsys):
    code, out, err = run(capsys, *args)
    assert (code, err) == (1, "")
    assert says in out, out
    assert out.rstrip().endswith("some gradients do not match")


def test_an_aliased_first_step_is_checked_from_zero_and_says_the_code_ignores_h0(capsys):
    _, out, _ = run(capsys, "min_char_rnn_class.py:RNNAliased.train")
    assert found(out)[-1] == "starts from h0 = 0 (it ignores the initial state it is given)"


def test_truncated_bptt_is_named_with_its_k_and_passes_with_dash_dash_truncate(capsys):
    args = ("rnn_numpy.py:RNNNumpy.bptt", "--cell", "rnn", "--map", "U=W_xh,V=W_hy,W=W_hh")
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert "\nthis is truncated BPTT with K = 5: with --truncate 5 it is checked as such\n" in out
    code, out, _ = run(capsys, *args, "--truncate", "5")
    assert code == 0 and "against the rnn cell, BPTT truncated to K = 5 steps" in out.splitlines()[0]


def test_the_default_lengths_reach_past_a_five_step_truncation():
    from derive.tools.check.report import CHECK_STEPS

    assert max(CHECK_STEPS) >= 8


def test_a_layer_that_hands_its_gradients_to_optimizers_and_truncates_is_read_and_named(capsys):
    args = ("mlfs/rnn_layer.py:RNN.forward_pass,RNN.backward_pass", "--cell", "rnn", *MLFS_MAP)
    code, out, _ = run(capsys, *args)
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.endswith((" ok", " WRONG"))}
    assert code == 1 and rows == {"forward": "ok", "W_xh": "WRONG", "W_hh": "WRONG", "W_hy": "ok", "x": "WRONG"}
    assert "\nthis is truncated BPTT with K = 6: with --truncate 6 it is checked as such\n" in out
