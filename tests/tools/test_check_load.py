"""bptt check's loader: a script's definitions taken without running its work, the user's code run
under a time limit with its own sys.argv, and every failure one line at the user's own line.

The scripts are in tests/user_code/load/: min_char_script.py reads input.txt (not there), its
command line and trains forever at the top level; misbehaving.py's functions loop, exit or make
numpy raise; rnn_class.py has a class, a dataclass and a model unpickled at the top level; common/
is a package of layers imported from the folder that holds it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import USER_CODE
from derive.tools.check.load import CheckError, Target, call_user, load_file, parse_target, resolve

LOAD = USER_CODE / "load"
MIN_CHAR = LOAD / "min_char_script.py"
MISBEHAVING = LOAD / "misbehaving.py"
RNN_CLASS = LOAD / "rnn_class.py"
LOADS_IN = 1.0  # seconds a script with a training loop at the top level may take to load: "well under"


@pytest.fixture(autouse=True)
def restore_imports(monkeypatch):
    """Each test's sys.path, and the modules it loads, forgotten afterwards (common/ has a config.py)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("bptt_check_", "common")):
            del sys.modules[name]


def test_a_script_that_trains_at_the_top_level_loads_its_definitions_only():
    started = time.perf_counter()
    loaded = load_file(MIN_CHAR)
    assert time.perf_counter() - started < LOADS_IN
    assert loaded.skipped == [
        'line 16: text = open("input.txt").read() (reads a file)',
        "line 17: symbols = sorted(set(text)) (raised NameError: name 'text' is not defined)",
        "line 18: n_text, vocab_size = len(text), len(symbols) (raised NameError: name 'text' is not defined)",
        'line 19: print(f"{n_text} characters, {vocab_size} of them differe... (a call)',
        "line 20: char_to_ix = {c: i for i, c in enumerate(symbols)} (raised NameError: name 'symbols' is not defined)",
        "line 21: ix_to_char = {i: c for i, c in enumerate(symbols)} (raised NameError: name 'symbols' is not defined)",
        "line 25: seq_length = int(sys.argv[1]) if len(sys.argv) > 1 else 25 (reads the command line)",
        "line 29: Wxh = np.random.randn(hidden_size, vocab_size) * 0.01 (raised NameError: name 'vocab_size' is not "
        "defined)",
        "line 31: Why = np.random.randn(vocab_size, hidden_size) * 0.01 (raised NameError: name 'vocab_size' is not "
        "defined)",
        "line 33: by = np.zeros((vocab_size, 1)) (raised NameError: name 'vocab_size' is not defined)",
        "line 83: mWxh, mWhh, mWhy = np.zeros_like(Wxh), np.zeros_like(Whh)... (raised NameError: name 'Wxh' is not "
        "defined)",
        "line 84: mbh, mby = np.zeros_like(bh), np.zeros_like(by) (raised NameError: name 'by' is not defined)",
        "line 85: smooth_loss = -np.log(1.0 / vocab_size) * seq_length (raised NameError: name 'vocab_size' is not "
        "defined)",
        "line 86: while True: ... (a loop)",
    ]
    assert not loaded.ran_everything
    module = loaded.module
    assert module.pickle is __import__("pickle") and (module.hidden_size, module.learning_rate) == (100, 0.1)


def test_the_loaded_lossFun_runs_once_the_check_sets_its_globals():
    module = load_file(MIN_CHAR).module
    rng = np.random.default_rng(0)
    V, H = 4, 3
    module.vocab_size = V
    module.Wxh, module.Whh, module.Why = (rng.standard_normal(s) * 0.1 for s in [(H, V), (H, H), (V, H)])
    module.bh, module.by = np.zeros((H, 1)), np.zeros((V, 1))
    loss, *grads, h = call_user(module.lossFun, [0, 1, 2], [1, 2, 3], np.zeros((H, 1)))
    assert np.isfinite(loss) and [g.shape for g in grads] == [(H, V), (H, H), (V, H), (H, 1), (V, 1)]


def test_the_whole_script_is_imported_on_request_and_says_where_it_failed():
    with pytest.raises(CheckError) as e:
        load_file(MIN_CHAR, run=True)
    assert str(e.value) == (
        f"{MIN_CHAR}:16: importing it raised FileNotFoundError: [Errno 2] No such file or directory: 'input.txt'"
    )


def test_the_users_code_sees_its_own_command_line_and_ours_is_back_after():
    ours = list(sys.argv)
    loaded = load_file(MISBEHAVING)
    assert sys.argv == ours
    assert call_user(loaded.module.argv) == [loaded.module.__file__]
    assert sys.argv == ours


def test_a_function_that_never_returns_is_stopped_at_its_loop():
    spin = load_file(MISBEHAVING).module.spin
    with pytest.raises(CheckError) as e:
        call_user(spin, 1, timeout=0.5)
    # the alarm finds the loop at its test or in its body, as the Python version compiles it
    assert str(e.value) in {
        f"{MISBEHAVING}:{line}: stopped after 0.5 s in spin (a loop that does not end?)" for line in (14, 15)
    }


def test_a_top_level_statement_that_never_ends_is_stopped_and_skipped(tmp_path):
    script = tmp_path / "hangs.py"
    hangs = "ready = next(i for i in itertools.count() if i < 0)"
    script.write_text(f"import itertools\n\n{hangs}\n\n\ndef lossFun():\n    pass\n")
    loaded = load_file(script, timeout=0.2)
    assert loaded.skipped == [
        "line 3: ready = next(i for i in itertools.count() if i < 0) (stopped after 0.2 s in <genexpr> (a loop "
        "that does not end?))"
    ]
    assert callable(loaded.module.lossFun)


def test_a_top_level_call_of_the_files_own_functions_is_not_run(tmp_path):
    script = tmp_path / "trains.py"
    script.write_text("def train(n):\n    while True:\n        pass\n\n\nhistory = train(10**9)\n")
    loaded = load_file(script, timeout=0.2)
    assert loaded.skipped == ["line 6: history = train(10**9) (calls train, defined in the file: run with --import)"]


def test_an_error_inside_numpy_is_reported_at_the_users_line():
    fn = load_file(MISBEHAVING).module.stacks_mismatched_states
    with pytest.raises(CheckError) as e:
        call_user(fn, np.zeros((2, 1)), label="lossFun")
    assert str(e.value) == f"lossFun ({MISBEHAVING}:21) raised ValueError: all input arrays must have the same shape"


def test_sys_exit_in_the_users_code_is_a_check_error():
    with pytest.raises(CheckError) as e:
        call_user(load_file(MISBEHAVING).module.exits)
    assert str(e.value) == f"exits ({MISBEHAVING}:25) raised SystemExit: no data file"


def test_a_package_beside_the_script_is_imported_from_the_cwd(monkeypatch):
    monkeypatch.chdir(LOAD)
    loaded = load_file(Path("common/time_layers.py"))
    assert loaded.ran_everything
    found = resolve(loaded, ("TimeRNN", "backward"))
    assert found.owner is loaded.module.TimeRNN and found.name == "TimeRNN.backward"
    rng = np.random.default_rng(0)
    layer = found.owner(rng.standard_normal((2, 3)), rng.standard_normal((3, 3)), np.zeros(3))
    hs = call_user(layer.forward, rng.standard_normal((1, 4, 2)), np.zeros((1, 3)))
    assert call_user(found.obj, layer, np.ones_like(hs)).shape == (1, 3)
    gate = loaded.module.TimeGate(np.zeros((2, 2)))
    assert np.allclose(gate.forward(np.ones((1, 2))), 0.5)  # common.functions.sigmoid


def test_a_class_a_dataclass_and_future_annotations_load():
    loaded = load_file(RNN_CLASS)
    assert loaded.skipped == [
        'line 46: trained = pickle.load(open("rnn.pkl", "rb")) (reads a file)',
        'line 48: if __name__ == "__main__": ... (the __main__ block)',
    ]
    module = loaded.module
    assert call_user(module.lossFun, module.RNN(module.Config()), [0, 1], [1, 2]) > 0


MISSING = {
    "function": (
        ("lossFun2",),
        "no function 'lossFun2' (it defines: Config, lossFun, sample, RNN, RNN.train, RNN.sample)",
    ),
    "class": (("Model", "train"), "no class 'Model' (it defines: Config, lossFun, sample, RNN, RNN.train, RNN.sample)"),
    "method": (("RNN", "trian"), "class RNN has no method 'trian' (it has: __init__, train, sample)"),
    "not-a-class": (("lossFun", "train"), "'lossFun' is not a class (it is a function)"),
}


@pytest.mark.parametrize("dotted, message", MISSING.values(), ids=MISSING)
def test_a_missing_name_lists_what_the_file_defines(dotted, message):
    with pytest.raises(CheckError) as e:
        resolve(load_file(RNN_CLASS), dotted)
    assert str(e.value) == f"{RNN_CLASS}: {message}"


NOT_RUN = {
    "assigned": ("trained", 46, "reads a file"),
    "main-block": ("main", 48, "the __main__ block"),
}


@pytest.mark.parametrize("name, line, why", NOT_RUN.values(), ids=NOT_RUN)
def test_a_name_defined_by_a_skipped_statement_says_so(name, line, why):
    with pytest.raises(CheckError) as e:
        resolve(load_file(RNN_CLASS), (name,))
    assert str(e.value) == (
        f"{RNN_CLASS}:{line}: no function {name!r}: the statement here that defines it was not run ({why}); "
        "--import runs the whole file"
    )


def test_a_python_2_file_is_named_as_one():
    with pytest.raises(CheckError, match=r"py2_minchar.py:19:5: this file is Python 2 \(a print statement\)"):
        load_file(USER_CODE / "py2_minchar.py")


TARGETS = {
    "function": ("rnn.py:lossFun", (("lossFun",),)),
    "method": ("models/rnn.py:RNN.train", (("RNN", "train"),)),
    "forward-backward": ("rnn.py:forward,RNN.backward", (("forward",), ("RNN", "backward"))),
    "last-colon": ("C:/rnn.py:lossFun", (("lossFun",),)),
}


@pytest.mark.parametrize("text, names", TARGETS.values(), ids=TARGETS)
def test_the_three_forms_of_target(text, names):
    target = parse_target(text)
    assert target == Target(Path(text.rpartition(":")[0]), names) and target.text == text


BAD_TARGETS = ["rnn.py", ":lossFun", "rnn.py:", "rnn.py:a,b,c", "rnn.py:A.B.c", "rnn.py:loss-fun", "rnn.py:class"]


@pytest.mark.parametrize("text", BAD_TARGETS)
def test_a_bad_target_says_the_forms_it_takes(text):
    with pytest.raises(CheckError) as e:
        parse_target(text)
    assert str(e.value) == (
        f"{text}: expected FILE.py:FUNCTION, FILE.py:CLASS.METHOD or FILE.py:FORWARD,BACKWARD, e.g. "
        "min_char_rnn.py:lossFun"
    )
