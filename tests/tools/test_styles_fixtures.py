"""The fixtures in tests/user_code/styles/ (gradient code in the styles of well-known NumPy RNN and LSTM
codebases, for bptt check) are what their docstrings say: every function or method called right there
matches central finite differences of its own forward and loss in float64, and every mistaken variant
does not.  Layer-style code (a forward and a backward taking the upstream gradient dh of every state)
is checked on the scalar sum(dh * h) for a random dh."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import USER_CODE, fd_grad

STYLES = USER_CODE / "styles"
D, H, T, N = 4, 5, 4, 3  # input size (the vocabulary where there is one), state size, steps, batch
V = D
RIGHT, WRONG = 1e-6, 1e-3  # relative error: below for right code, above for a mistake


# ---------------------------------------------------------------------------------------------- helpers


def load(name: str) -> types.ModuleType:
    """A fixture with no top-level I/O, imported from its file."""
    path = STYLES / name
    spec = importlib.util.spec_from_file_location(f"styles_fixture_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def load_definitions(name: str) -> types.ModuleType:
    """A script that reads its data and trains at top level: only its imports, functions, classes and
    assignments of constants (the hyperparameters) are executed; the caller sets the other globals."""
    path = STYLES / name
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    kept = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef)
        or (isinstance(node, ast.Assign) and _literal(node.value))
    ]
    module = types.ModuleType(f"styles_fixture_{path.stem}")
    module.__file__ = str(path)
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), module.__dict__)
    return module


FD_STEP = 1e-5  # the fixtures' own step for central differences


def rel_error(analytic, numeric) -> float:
    analytic, numeric = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    assert analytic.shape == numeric.shape
    return float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-300))


def errors(loss: Callable[[], float], pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """{name: relative error of the analytic gradient} for pairs {name: (array, its analytic gradient)}."""
    return {name: rel_error(grad, fd_grad(loss, array, FD_STEP)) for name, (array, grad) in pairs.items()}


def all_right(errs: dict[str, float]) -> None:
    assert all(e < RIGHT for e in errs.values()), errs


def wrong(errs: dict[str, float], names) -> None:
    assert all(errs[name] > WRONG for name in names), errs


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


# ---------------------------------------------------------------------------------------- min_char_rnn.py


def test_min_char_rnn_script_loss_fun_is_right(rng):
    m = load_definitions("min_char_rnn.py")
    assert (m.hidden_size, m.seq_length) == (100, 25) and not hasattr(m, "data")  # the script's own values
    m.vocab_size, m.hidden_size, m.seq_length = V, H, T
    m.Wxh, m.Whh, m.Why = randn(rng, H, V, scale=0.5), randn(rng, H, H, scale=0.5), randn(rng, V, H, scale=0.5)
    m.bh, m.by = randn(rng, H, 1, scale=0.1), randn(rng, V, 1, scale=0.1)
    inputs, targets = list(rng.integers(0, V, T)), list(rng.integers(0, V, T))
    hprev = np.tanh(randn(rng, H, 1))

    loss, *grads, h_last = m.lossFun(inputs, targets, hprev)
    assert max(np.abs(g).max() for g in grads) < 5  # under the clip: the clipped gradient is the gradient
    assert h_last.shape == (H, 1)
    params = [m.Wxh, m.Whh, m.Why, m.bh, m.by]
    pairs = dict(zip(["Wxh", "Whh", "Why", "bh", "by"], zip(params, grads)))
    all_right(errors(lambda: m.lossFun(inputs, targets, hprev)[0], pairs))


# ----------------------------------------------------------------------------------- min_char_rnn_class.py


@pytest.fixture
def char_rnn(rng):
    m = load_definitions("min_char_rnn_class.py")
    assert not hasattr(m, "data")

    def make(cls):
        net = cls(hidden_size=H, vocab_size=V, seq_length=T, learning_rate=1e-1)
        net.Wxh, net.Whh, net.Why = (randn(np.random.default_rng(7), *s, scale=0.5) for s in [(H, V), (H, H), (V, H)])
        net.bh, net.by = np.full((H, 1), 0.1), np.full((V, 1), -0.1)
        return net

    inputs, targets = list(rng.integers(0, V, T)), list(rng.integers(0, V, T))
    return m, make, inputs, targets


NAMES = ("Wxh", "Whh", "Why", "bh", "by")


def train_errors(net, reference, inputs, targets, hprev) -> dict[str, float]:
    """net.train's gradients against finite differences of reference.train's loss (reference's weights are
    net's own arrays)."""
    for name in NAMES:
        setattr(reference, name, getattr(net, name))
    loss, *grads, _ = net.train(inputs, targets, hprev, V)
    pairs = {name: (getattr(net, name), g) for name, g in zip(NAMES, grads)}
    return errors(lambda: reference.train(inputs, targets, hprev, V)[0], pairs)


def test_class_port_train_is_right(char_rnn, rng):
    m, make, inputs, targets = char_rnn
    net = make(m.RNN)
    hprev = np.tanh(randn(rng, H, 1))
    all_right(train_errors(net, net, inputs, targets, hprev))
    *_, h_last = net.train(inputs, targets, hprev, V)
    h = hprev
    for i in inputs:
        h = np.tanh(net.Wxh[:, [i]] + net.Whh @ h + net.bh)
    np.testing.assert_allclose(h_last, h, rtol=1e-12)


def test_class_port_with_aliased_states_is_wrong(char_rnn, rng):
    m, make, inputs, targets = char_rnn
    right, aliased = make(m.RNN), make(m.RNNAliased)
    # with a nonzero hprev the forward ignores it: the loss and the recurrent gradients are off
    hprev = np.tanh(randn(rng, H, 1))
    assert abs(aliased.train(inputs, targets, hprev, V)[0] - right.train(inputs, targets, hprev, V)[0]) > 1e-3
    wrong(train_errors(aliased, right, inputs, targets, hprev), ("Wxh", "Whh", "bh"))
    # from hprev = 0 the forward is right; the backward's t = 0 term of dWhh reads h[T-1], the last state
    zero = np.zeros((H, 1))
    right_loss = right.train(inputs, targets, zero, V)[0]
    assert aliased.train(inputs, targets, zero, V)[0] == pytest.approx(right_loss, rel=1e-14)
    errs = train_errors(aliased, right, inputs, targets, zero)
    wrong(errs, ("Whh",))
    all_right({k: e for k, e in errs.items() if k != "Whh"})
    loss, dWxh, dWhh, *_ = aliased.train(inputs, targets, zero, V)
    _, _, dWhh_right, *_ = right.train(inputs, targets, zero, V)
    # the difference is exactly dhraw_0 h[T-1]^T: a rank-one matrix
    assert np.linalg.matrix_rank(dWhh - dWhh_right, tol=1e-10) == 1


# ------------------------------------------------------------------------------------------- rnn_numpy.py


@pytest.fixture
def wildml(rng):
    m = load("rnn_numpy.py")
    model = m.RNNNumpy(V, hidden_dim=H)
    model.U, model.V, model.W = randn(rng, H, V, scale=0.6), randn(rng, V, H, scale=0.6), randn(rng, H, H, scale=0.6)
    x, y = [int(i) for i in rng.integers(0, V, T)], [int(i) for i in rng.integers(0, V, T)]
    return m, model, x, y


def bptt_errors(model, x, y) -> dict[str, float]:
    grads = model.bptt(x, y)
    pairs = {name: (getattr(model, name), g) for name, g in zip("UVW", grads)}
    return errors(lambda: model.calculate_total_loss([x], [y]), pairs)


def test_wildml_bptt_is_right_within_its_truncation(wildml):
    m, model, x, y = wildml
    assert model.bptt_truncate == 4 and len(x) <= model.bptt_truncate + 1  # keeps 5 steps: all of these
    all_right(bptt_errors(model, x, y))
    assert model.calculate_loss([x, x], [y, y]) == pytest.approx(model.calculate_total_loss([x], [y]) / T, rel=1e-14)


def test_wildml_bptt_truncated_is_wrong(wildml):
    m, model, x, y = wildml
    model.bptt_truncate = 1  # two steps kept of four
    errs = bptt_errors(model, x, y)
    wrong(errs, "UW")
    assert errs["V"] < RIGHT  # V is not recurrent


def test_wildml_gradient_check_passes(wildml, capsys):
    m, model, x, y = wildml
    model.gradient_check(x, y)
    out = capsys.readouterr().out
    assert "off" not in out and out.count("OK") == 3, out


# ------------------------------------------------------------------------------------------ rnn_layers.py


@pytest.fixture(scope="module")
def cs231n():
    return load("rnn_layers.py")


def test_cs231n_rnn_step(cs231n, rng):
    x, h, b = randn(rng, N, D), randn(rng, N, H), randn(rng, H)
    Wx, Wh = randn(rng, D, H, scale=0.5), randn(rng, H, H, scale=0.5)
    dnext = randn(rng, N, H)
    out, cache = cs231n.rnn_step_forward(x, h, Wx, Wh, b)
    grads = cs231n.rnn_step_backward(dnext, cache)
    loss = lambda: np.sum(dnext * cs231n.rnn_step_forward(x, h, Wx, Wh, b)[0])  # noqa: E731
    all_right(errors(loss, dict(zip(["x", "h", "Wx", "Wh", "b"], zip([x, h, Wx, Wh, b], grads)))))


@pytest.fixture
def rnn_inputs(rng):
    x, h0, b, dh = randn(rng, N, T, D), randn(rng, N, H), randn(rng, H), randn(rng, N, T, H)
    return x, h0, randn(rng, D, H, scale=0.5), randn(rng, H, H, scale=0.5), b, dh


def test_cs231n_rnn_sequence(cs231n, rnn_inputs):
    x, h0, Wx, Wh, b, dh = rnn_inputs
    _, cache = cs231n.rnn_forward(x, h0, Wx, Wh, b)
    grads = cs231n.rnn_backward(dh, cache)
    loss = lambda: np.sum(dh * cs231n.rnn_forward(x, h0, Wx, Wh, b)[0])  # noqa: E731
    all_right(errors(loss, dict(zip(["x", "h0", "Wx", "Wh", "b"], zip([x, h0, Wx, Wh, b], grads)))))


def test_cs231n_rnn_backward_no_carry_is_wrong(cs231n, rnn_inputs):
    x, h0, Wx, Wh, b, dh = rnn_inputs
    _, cache = cs231n.rnn_forward(x, h0, Wx, Wh, b)
    grads = cs231n.rnn_backward_no_carry(dh, cache)
    loss = lambda: np.sum(dh * cs231n.rnn_forward(x, h0, Wx, Wh, b)[0])  # noqa: E731
    names = ["x", "h0", "Wx", "Wh", "b"]
    wrong(errors(loss, dict(zip(names, zip([x, h0, Wx, Wh, b], grads)))), names)


def test_cs231n_lstm_step(cs231n, rng):
    x, h, c = randn(rng, N, D), randn(rng, N, H), randn(rng, N, H)
    Wx, Wh, b = randn(rng, D, 4 * H, scale=0.5), randn(rng, H, 4 * H, scale=0.5), randn(rng, 4 * H)
    dnh, dnc = randn(rng, N, H), randn(rng, N, H)
    *_, cache = cs231n.lstm_step_forward(x, h, c, Wx, Wh, b)
    grads = cs231n.lstm_step_backward(dnh, dnc, cache)

    def loss():
        nh, nc, _ = cs231n.lstm_step_forward(x, h, c, Wx, Wh, b)
        return np.sum(dnh * nh) + np.sum(dnc * nc)

    all_right(errors(loss, dict(zip(["x", "h", "c", "Wx", "Wh", "b"], zip([x, h, c, Wx, Wh, b], grads)))))


@pytest.fixture
def lstm_inputs(rng):
    x, h0 = randn(rng, N, T, D), randn(rng, N, H)
    Wx, Wh, b = randn(rng, D, 4 * H, scale=0.5), randn(rng, H, 4 * H, scale=0.5), randn(rng, 4 * H)
    return x, h0, Wx, Wh, b, randn(rng, N, T, H)


@pytest.mark.parametrize("backward, right", [("lstm_backward", True), ("lstm_backward_no_cell_carry", False)])
def test_cs231n_lstm_sequence(cs231n, lstm_inputs, backward, right):
    x, h0, Wx, Wh, b, dh = lstm_inputs
    _, cache = cs231n.lstm_forward(x, h0, Wx, Wh, b)
    grads = getattr(cs231n, backward)(dh, cache)
    loss = lambda: np.sum(dh * cs231n.lstm_forward(x, h0, Wx, Wh, b)[0])  # noqa: E731
    errs = errors(loss, dict(zip(["x", "h0", "Wx", "Wh", "b"], zip([x, h0, Wx, Wh, b], grads))))
    all_right(errs) if right else wrong(errs, ["x", "h0", "Wx", "Wh", "b"])


def test_cs231n_embedding_affine_and_loss(cs231n, rng):
    words, W = rng.integers(0, V, (N, T)), randn(rng, V, D)
    words[0, :2] = words[1, 0] = 2  # a repeated word: its gradient rows must add up
    dout = randn(rng, N, T, D)
    _, cache = cs231n.word_embedding_forward(words, W)
    dW = cs231n.word_embedding_backward(dout, cache)
    all_right(errors(lambda: np.sum(dout * cs231n.word_embedding_forward(words, W)[0]), {"W": (W, dW)}))

    x, w, b, dout = randn(rng, N, T, D), randn(rng, D, V), randn(rng, V), randn(rng, N, T, V)
    _, cache = cs231n.temporal_affine_forward(x, w, b)
    grads = cs231n.temporal_affine_backward(dout, cache)
    loss = lambda: np.sum(dout * cs231n.temporal_affine_forward(x, w, b)[0])  # noqa: E731
    all_right(errors(loss, dict(zip("xwb", zip([x, w, b], grads)))))

    scores, labels = randn(rng, N, T, V), rng.integers(0, V, (N, T))
    mask = np.ones((N, T), dtype=bool)
    mask[2, 2:] = False  # a shorter sequence, padded
    loss_value, dx = cs231n.temporal_softmax_loss(scores, labels, mask)
    p = np.exp(scores) / np.exp(scores).sum(axis=2, keepdims=True)
    per_step = -np.log(np.take_along_axis(p, labels[..., None], axis=2)[..., 0])
    assert loss_value == pytest.approx(np.sum(per_step * mask) / N, rel=1e-12)  # summed over steps, mean over N
    all_right(errors(lambda: cs231n.temporal_softmax_loss(scores, labels, mask)[0], {"x": (scores, dx)}))


# ---------------------------------------------------------------------------------- common/time_layers.py


@pytest.fixture
def dlfs2(monkeypatch):
    """common.time_layers imported as the book's scripts do: from the folder that holds common/."""

    def drop():
        for name in [n for n in sys.modules if n == "common" or n.startswith("common.")]:
            del sys.modules[name]

    drop()
    monkeypatch.chdir(STYLES)
    monkeypatch.syspath_prepend(str(STYLES))
    try:
        yield importlib.import_module("common.time_layers")
    finally:
        drop()


def test_dlfs2_imports_numpy_behind_its_gpu_flag(dlfs2):
    assert dlfs2.np is np and dlfs2.GPU is False
    assert Path(sys.modules["common"].__file__).parent == STYLES / "common"


def test_dlfs2_rnn_step(dlfs2, rng):
    Wx, Wh, b = randn(rng, D, H, scale=0.5), randn(rng, H, H, scale=0.5), randn(rng, H)
    x, h, dnext = randn(rng, N, D), randn(rng, N, H), randn(rng, N, H)
    layer = dlfs2.RNN(Wx, Wh, b)
    layer.forward(x, h)
    dx, dh = layer.backward(dnext)
    loss = lambda: np.sum(dnext * dlfs2.RNN(Wx, Wh, b).forward(x, h))  # noqa: E731
    pairs = {"x": (x, dx), "h": (h, dh), **{n: (p, g) for n, p, g in zip(["Wx", "Wh", "b"], layer.params, layer.grads)}}
    all_right(errors(loss, pairs))


@pytest.mark.parametrize("kind", ["TimeRNN", "TimeLSTM", "TimeLSTMNoTanhGrad"])
def test_dlfs2_time_layers(dlfs2, rng, kind):
    gates = 1 if kind == "TimeRNN" else 4
    Wx, Wh, b = randn(rng, D, gates * H, scale=0.5), randn(rng, H, gates * H, scale=0.5), randn(rng, gates * H)
    xs, dhs = randn(rng, N, T, D), randn(rng, N, T, H)
    layer = getattr(dlfs2, kind)(Wx, Wh, b)
    hs = layer.forward(xs)
    assert hs.dtype == np.float64
    dxs = layer.backward(dhs)
    loss = lambda: np.sum(dhs * layer.forward(xs))  # noqa: E731  (not stateful: from zero each time)
    pairs = {"xs": (xs, dxs), **{n: (p, g.copy()) for n, p, g in zip(["Wx", "Wh", "b"], layer.params, layer.grads)}}
    errs = errors(loss, pairs)
    if kind == "TimeLSTMNoTanhGrad":
        wrong(errs, pairs)
        return
    all_right(errs)
    # stateful, from a given state: the state's gradient is left in layer.dh
    h0 = randn(rng, N, H)
    state = (h0,) if kind == "TimeRNN" else (h0, randn(rng, N, H))
    stateful = getattr(dlfs2, kind)(Wx, Wh, b, stateful=True)

    def run():
        stateful.set_state(*state)
        return np.sum(dhs * stateful.forward(xs))

    run()
    stateful.backward(dhs)
    all_right(errors(run, {"h0": (h0, stateful.dh)}))


def test_dlfs2_lstm_step(dlfs2, rng):
    Wx, Wh, b = randn(rng, D, 4 * H, scale=0.5), randn(rng, H, 4 * H, scale=0.5), randn(rng, 4 * H)
    x, h, c, dnh, dnc = randn(rng, N, D), randn(rng, N, H), randn(rng, N, H), randn(rng, N, H), randn(rng, N, H)
    layer = dlfs2.LSTM(Wx, Wh, b)
    layer.forward(x, h, c)
    dx, dh, dc = layer.backward(dnh, dnc)

    def loss():
        nh, nc = dlfs2.LSTM(Wx, Wh, b).forward(x, h, c)
        return np.sum(dnh * nh) + np.sum(dnc * nc)

    pairs = {"x": (x, dx), "h": (h, dh), "c": (c, dc)}
    pairs |= {n: (p, g) for n, p, g in zip(["Wx", "Wh", "b"], layer.params, layer.grads)}
    all_right(errors(loss, pairs))


def test_dlfs2_embedding_affine_and_loss(dlfs2, rng):
    W = randn(rng, V, D)
    words = rng.integers(0, V, (N, T))
    words[0, :2] = words[1, 0] = 1
    dout = randn(rng, N, T, D)
    emb = dlfs2.TimeEmbedding(W)
    emb.forward(words)
    emb.backward(dout)
    all_right(errors(lambda: np.sum(dout * emb.forward(words)), {"W": (W, emb.grads[0].copy())}))

    x, dout = randn(rng, N, T, D), randn(rng, N, T, V)
    affine = dlfs2.TimeAffine(randn(rng, D, V), randn(rng, V))
    affine.forward(x)
    dx = affine.backward(dout)
    pairs = {"x": (x, dx)} | {n: (p, g.copy()) for n, p, g in zip(["W", "b"], affine.params, affine.grads)}
    all_right(errors(lambda: np.sum(dout * affine.forward(x)), pairs))

    scores, labels = randn(rng, N, T, V), rng.integers(0, V, (N, T))
    labels[2, 3] = -1  # ignore_label: a padded step
    softmax_loss = dlfs2.TimeSoftmaxWithLoss()
    value = softmax_loss.forward(scores, labels)
    dscores = softmax_loss.backward()
    keep = labels != -1
    p = np.exp(scores) / np.exp(scores).sum(axis=2, keepdims=True)
    per_step = -np.log(np.take_along_axis(p, np.where(keep, labels, 0)[..., None], axis=2)[..., 0])
    assert value == pytest.approx(per_step[keep].mean(), rel=1e-12)  # the mean over the N * T - 1 steps
    all_right(errors(lambda: dlfs2.TimeSoftmaxWithLoss().forward(scores, labels), {"x": (scores, dscores)}))


# ------------------------------------------------------------------------------------------- dlai_rnn.py


@pytest.fixture(scope="module")
def dlai():
    return load("dlai_rnn.py")


def rnn_parameters(rng):
    return {
        "Wax": randn(rng, H, D, scale=0.5),
        "Waa": randn(rng, H, H, scale=0.5),
        "Wya": randn(rng, V, H),
        "ba": randn(rng, H, 1),
        "by": randn(rng, V, 1),
    }


def lstm_parameters(rng):
    parameters = {}
    for gate in "fico":
        parameters["W" + gate] = randn(rng, H, H + D, scale=0.5)
        parameters["b" + gate] = randn(rng, H, 1)
    parameters["Wy"], parameters["by"] = randn(rng, V, H), randn(rng, V, 1)
    return parameters


def test_dlai_rnn_cell(dlai, rng):
    parameters, xt, a_prev, da = rnn_parameters(rng), randn(rng, D, N), randn(rng, H, N), randn(rng, H, N)
    _, _, cache = dlai.rnn_cell_forward(xt, a_prev, parameters)
    g = dlai.rnn_cell_backward(da, cache)
    loss = lambda: np.sum(da * dlai.rnn_cell_forward(xt, a_prev, parameters)[0])  # noqa: E731
    pairs = {"xt": (xt, g["dxt"]), "a_prev": (a_prev, g["da_prev"])}
    pairs |= {k: (parameters[k], g["d" + k]) for k in ("Wax", "Waa", "ba")}
    all_right(errors(loss, pairs))


def test_dlai_rnn_sequence(dlai, rng):
    parameters, x, a0, da = rnn_parameters(rng), randn(rng, D, N, T), randn(rng, H, N), randn(rng, H, N, T)
    _, _, caches = dlai.rnn_forward(x, a0, parameters)
    g = dlai.rnn_backward(da, caches)
    loss = lambda: np.sum(da * dlai.rnn_forward(x, a0, parameters)[0])  # noqa: E731
    pairs = {"x": (x, g["dx"]), "a0": (a0, g["da0"])} | {k: (parameters[k], g["d" + k]) for k in ("Wax", "Waa", "ba")}
    all_right(errors(loss, pairs))


def test_dlai_lstm_cell(dlai, rng):
    parameters = lstm_parameters(rng)
    xt, a_prev, c_prev = randn(rng, D, N), randn(rng, H, N), randn(rng, H, N)
    da, dc = randn(rng, H, N), randn(rng, H, N)
    *_, cache = dlai.lstm_cell_forward(xt, a_prev, c_prev, parameters)
    g = dlai.lstm_cell_backward(da, dc, cache)

    def loss():
        a_next, c_next, _, _ = dlai.lstm_cell_forward(xt, a_prev, c_prev, parameters)
        return np.sum(da * a_next) + np.sum(dc * c_next)

    pairs = {"xt": (xt, g["dxt"]), "a_prev": (a_prev, g["da_prev"]), "c_prev": (c_prev, g["dc_prev"])}
    pairs |= {k: (parameters[k], g["d" + k]) for k in ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")}
    all_right(errors(loss, pairs))


@pytest.mark.parametrize("backward, right", [("lstm_backward", True), ("lstm_backward_no_carry", False)])
def test_dlai_lstm_sequence(dlai, rng, backward, right):
    parameters, x, a0, da = lstm_parameters(rng), randn(rng, D, N, T), randn(rng, H, N), randn(rng, H, N, T)
    a, _, c, caches = dlai.lstm_forward(x, a0, parameters)
    assert a.shape == c.shape == (H, N, T)
    g = getattr(dlai, backward)(da, caches)
    loss = lambda: np.sum(da * dlai.lstm_forward(x, a0, parameters)[0])  # noqa: E731
    names = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
    pairs = {"x": (x, g["dx"]), "a0": (a0, g["da0"])} | {k: (parameters[k], g["d" + k]) for k in names}
    errs = errors(loss, pairs)
    all_right(errs) if right else wrong(errs, pairs)
