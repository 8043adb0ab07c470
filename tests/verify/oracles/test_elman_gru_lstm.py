"""Tests for the hand-written BPTT references for the Elman RNN, the LSTM and the GRU
(derive.verify.oracles.elman, oracle_gru, oracle_lstm).

Each reference is checked against central finite differences of its own loss
(every parameter and every initial state, unbatched and batched), its loss
against an independently written forward pass, truncated BPTT against its
definition (finite differences with the state entering the window frozen), and
the Elman cell without biases against the seed RNN's reference.
"""

import functools

import numpy as np
import pytest

from conftest import fd_grad
from derive.verify.oracles.elman import reference_elman
from derive.verify.oracles.gru import reference_gru
from derive.verify.oracles.lstm import reference_lstm
from derive.verify.oracles.rnn import reference_loss_and_gradients

N_X, N_H, N_Y = 3, 4, 5
B = 2
STEPS = (1, 2, 3, 4)
FD_RTOL = 1e-6  # relative tolerance for analytic vs finite-difference gradients
FD_ATOL = 1e-8  # absolute floor, for gradient entries that are ~0
SAME_RTOL = 1e-12  # two computations of the same quantity in (nearly) the same order
SAME_ATOL = 1e-14

# Parameter shapes, written out here independently of the module under test.
SHAPES = {
    "elman": {
        "W_xh": (N_H, N_X),
        "W_hh": (N_H, N_H),
        "W_hy": (N_Y, N_H),
        "b_h": (N_H,),
        "b_y": (N_Y,),
    },
    "lstm": {
        **{f"W_{q}": (N_H, N_X) for q in "fiog"},
        **{f"U_{q}": (N_H, N_H) for q in "fiog"},
        **{f"b_{q}": (N_H,) for q in "fiog"},
        "W_y": (N_Y, N_H),
        "b_y": (N_Y,),
    },
    "gru": {
        **{f"W_{q}": (N_H, N_X) for q in "run"},
        **{f"U_{q}": (N_H, N_H) for q in "run"},
        **{f"b_{q}": (N_H,) for q in "run"},
        "W_y": (N_Y, N_H),
        "b_y": (N_Y,),
    },
}
STATES = {"elman": ("h0",), "lstm": ("h0", "c0"), "gru": ("h0",)}
REFERENCES = {"elman": reference_elman, "lstm": reference_lstm, "gru": reference_gru}
MODELS = tuple(SHAPES)


def make_problem(model, T, batched, seed=0):
    """Seeded random parameters (0.5 * randn), inputs, labels and nonzero initial states."""
    rng = np.random.default_rng([MODELS.index(model), T, int(batched), seed])
    params = {name: 0.5 * rng.standard_normal(shape) for name, shape in SHAPES[model].items()}
    lead = (T, B) if batched else (T,)
    xs = rng.standard_normal((*lead, N_X))
    labels = rng.integers(0, N_Y, size=lead)
    states = {name: 0.5 * rng.standard_normal((B, N_H) if batched else (N_H,)) for name in STATES[model]}
    return params, xs, labels, states


def run(model, params, xs, labels, states, truncate=None):
    return REFERENCES[model](params, xs, labels, **states, truncate=truncate)


@functools.cache
def analytic(model, T, batched):
    """(problem, loss, grads) -- cached, since every parameter's test needs the same run."""
    problem = make_problem(model, T, batched)
    loss, grads = run(model, *problem)
    return problem, loss, grads


# ----------------------------------------------------------------------------
# Analytic gradients vs. finite differences of the same reference's loss
# ----------------------------------------------------------------------------


def _fd_cases():
    for model in MODELS:
        for T in STEPS:
            for batched in (False, True):
                for wrt in (*SHAPES[model], *STATES[model]):
                    tag = "-batched" if batched else ""
                    marks = pytest.mark.slow if T == STEPS[-1] else ()  # the longest sequence: slow tier
                    yield pytest.param(model, T, batched, wrt, id=f"{model}-T{T}{tag}-{wrt}", marks=marks)


@pytest.mark.parametrize("model, T, batched, wrt", list(_fd_cases()))
def test_gradient_matches_finite_differences(model, T, batched, wrt):
    (params, xs, labels, states), _, grads = analytic(model, T, batched)
    params = {k: v.copy() for k, v in params.items()}
    states = {k: v.copy() for k, v in states.items()}
    target = params[wrt] if wrt in params else states[wrt]

    num = fd_grad(lambda: run(model, params, xs, labels, states)[0], target)
    assert grads[wrt].shape == target.shape
    assert grads[wrt].dtype == np.float64
    np.testing.assert_allclose(grads[wrt], num, rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"{model} d/d{wrt}")


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("model", MODELS)
def test_returns_loss_and_every_gradient(model, batched):
    (params, _, _, states), loss, grads = analytic(model, 3, batched)
    assert isinstance(loss, float)
    assert set(grads) == set(params) | set(states)
    for name, value in (*params.items(), *states.items()):
        assert grads[name].shape == value.shape, name
        assert grads[name].dtype == np.float64, name


# ----------------------------------------------------------------------------
# The loss against an independently written forward pass (1-D vectors, no dicts)
# ----------------------------------------------------------------------------


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def elman_step(P, x, h):
    (h,) = h
    h = np.tanh(P["W_xh"] @ x + P["W_hh"] @ h + P["b_h"])
    return (h,), P["W_hy"] @ h + P["b_y"]


def lstm_step(P, x, state):
    h, c = state

    def gate(q):
        return P[f"W_{q}"] @ x + P[f"U_{q}"] @ h + P[f"b_{q}"]

    c = _sig(gate("f")) * c + _sig(gate("i")) * np.tanh(gate("g"))
    h = _sig(gate("o")) * np.tanh(c)
    return (h, c), P["W_y"] @ h + P["b_y"]


def gru_step(P, x, h):
    (h,) = h
    r = _sig(P["W_r"] @ x + P["U_r"] @ h + P["b_r"])
    u = _sig(P["W_u"] @ x + P["U_u"] @ h + P["b_u"])
    n = np.tanh(P["W_n"] @ x + P["U_n"] @ (r * h) + P["b_n"])
    h = u * h + (1.0 - u) * n
    return (h,), P["W_y"] @ h + P["b_y"]


STEP = {"elman": elman_step, "lstm": lstm_step, "gru": gru_step}


def cross_entropy(y, label):
    m = y.max()
    return -(y[label] - m - np.log(np.exp(y - m).sum()))


def forward_loss(model, P, xs, labels, state):
    """J = sum_t J_t of one sequence, starting from `state` = (h_0,) or (h_0, c_0)."""
    total = 0.0
    for t in range(1, len(xs) + 1):
        state, y = STEP[model](P, xs[t - 1], state)
        total += cross_entropy(y, labels[t - 1])
    return total


def last_loss(model, P, xs, labels, state, start, t):
    """J_t alone, running steps start..t of one sequence from `state` = the state entering step `start`."""
    for k in range(start, t + 1):
        state, y = STEP[model](P, xs[k - 1], state)
    return cross_entropy(y, labels[t - 1])


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
@pytest.mark.parametrize("model", MODELS)
def test_loss_matches_independent_forward(model, T, batched):
    (params, xs, labels, states), loss, _ = analytic(model, T, batched)
    if batched:
        expected = sum(
            forward_loss(model, params, xs[:, b], labels[:, b], tuple(states[s][b] for s in STATES[model]))
            for b in range(B)
        )
    else:
        expected = forward_loss(model, params, xs, labels, tuple(states[s] for s in STATES[model]))
    assert loss == pytest.approx(expected, rel=SAME_RTOL)


def test_gru_resets_before_the_recurrent_matrix():
    """Cho et al.: U_n (r * h), not r * (U_n h) -- the two differ once h0 != 0 and r is not all ones."""
    params, xs, labels, states = make_problem("gru", 1, False)
    P, x, h = params, xs[0], states["h0"]
    r = _sig(P["W_r"] @ x + P["U_r"] @ h + P["b_r"])
    u = _sig(P["W_u"] @ x + P["U_u"] @ h + P["b_u"])
    n_other = np.tanh(P["W_n"] @ x + r * (P["U_n"] @ h) + P["b_n"])
    h_other = u * h + (1.0 - u) * n_other
    other = cross_entropy(P["W_y"] @ h_other + P["b_y"], labels[0])
    loss, _ = run("gru", *make_problem("gru", 1, False))
    assert loss != pytest.approx(other, rel=1e-6)
    assert loss == pytest.approx(forward_loss("gru", P, xs, labels, (h,)), rel=SAME_RTOL)


# ----------------------------------------------------------------------------
# Batching, defaults, input checks
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "K2"])
@pytest.mark.parametrize("model", MODELS)
def test_batched_is_sum_of_sequences(model, truncate):
    params, xs, labels, states = make_problem(model, 3, True)
    loss, grads = run(model, params, xs, labels, states, truncate)
    total = 0.0
    summed = {k: np.zeros_like(v) for k, v in params.items()}
    for b in range(B):
        lb, gb = run(model, params, xs[:, b], labels[:, b], {s: v[b] for s, v in states.items()}, truncate)
        total += lb
        for k in params:
            summed[k] += gb[k]
        for s in states:
            np.testing.assert_allclose(grads[s][b], gb[s], rtol=SAME_RTOL, atol=SAME_ATOL, err_msg=s)
    assert loss == pytest.approx(total, rel=SAME_RTOL)
    for k in params:
        np.testing.assert_allclose(grads[k], summed[k], rtol=SAME_RTOL, atol=SAME_ATOL, err_msg=k)


@pytest.mark.parametrize("model", MODELS)
def test_default_initial_states_are_zeros(model):
    for batched in (False, True):
        params, xs, labels, states = make_problem(model, 3, batched)
        zeros = {s: np.zeros_like(v) for s, v in states.items()}
        l1, g1 = REFERENCES[model](params, xs, labels)
        l2, g2 = run(model, params, xs, labels, zeros)
        assert l1 == l2
        assert set(g1) == set(g2)
        for k in g1:
            np.testing.assert_array_equal(g1[k], g2[k])
            assert g1[k].shape == g2[k].shape


@pytest.mark.parametrize("model", MODELS)
def test_rejects_bad_inputs(model):
    params, xs, labels, states = make_problem(model, 2, False)
    for K in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="truncate"):
            run(model, params, xs, labels, states, truncate=K)
    with pytest.raises(ValueError, match="h0"):
        run(model, params, xs, labels, {**states, "h0": np.zeros((B, N_H))})
    with pytest.raises(ValueError, match="labels"):
        run(model, params, xs, np.array([0, N_Y]), states)
    with pytest.raises(ValueError, match="labels"):
        run(model, params, xs, np.array([0, -1]), states)
    bad = dict(params)
    bad[next(k for k in params if k.startswith("U_") or k == "W_hh")] = np.zeros((N_H, N_H + 1))
    with pytest.raises(ValueError):
        run(model, bad, xs, labels, states)


# ----------------------------------------------------------------------------
# Truncated BPTT
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
@pytest.mark.parametrize("model", MODELS)
def test_truncate_at_least_T_equals_full(model, T, batched):
    (params, xs, labels, states), loss, full = analytic(model, T, batched)
    for K in (T, T + 1, T + 5):
        lk, gk = run(model, params, xs, labels, states, truncate=K)
        assert lk == loss
        assert set(gk) == set(full)
        for k in full:
            np.testing.assert_allclose(gk[k], full[k], rtol=SAME_RTOL, atol=SAME_ATOL, err_msg=f"K={K} {k}")


def _states_along(model, P, xs, state):
    """states[t] = the state after step t (states[0] = the initial state)."""
    states = [state]
    for x in xs:
        state, _ = STEP[model](P, x, state)
        states.append(state)
    return states


@pytest.mark.parametrize("K", [1, 2, 3], ids=lambda K: f"K{K}")
@pytest.mark.parametrize("model", MODELS)
def test_truncate_K_matches_stop_gradient_fd(model, K):
    """Truncation = for each J_t, freeze the state entering step s = max(1, t-K+1), then differentiate.

    Finite differences of J_t recomputed from step s, with the unperturbed state
    after step s-1 held constant -- unless s = 1, when it is the (perturbable)
    initial state.  The sum over t must equal the reference's truncate=K gradients.
    """
    T = 4
    params, xs, labels, states = make_problem(model, T, False, seed=3)
    names = STATES[model]
    along = _states_along(model, params, xs, tuple(states[s] for s in names))
    P = {k: v.copy() for k, v in params.items()}
    init = {s: v.copy() for s, v in states.items()}
    expected = {k: np.zeros_like(v) for k, v in (*P.items(), *init.items())}

    for t in range(1, T + 1):
        s = max(1, t - K + 1)

        def J_t():
            entering = tuple(init[n] for n in names) if s == 1 else along[s - 1]
            return last_loss(model, P, xs, labels, entering, start=s, t=t)

        for k in P:
            expected[k] += fd_grad(J_t, P[k])
        for n in names:
            expected[n] += fd_grad(J_t, init[n])

    _, got = run(model, params, xs, labels, states, truncate=K)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"truncate={K} {k}")


@pytest.mark.parametrize("model", MODELS)
def test_truncation_changes_the_recurrent_gradients_only(model):
    """With T = 4 and K = 1 the recurrent weights' gradients differ from full BPTT; the output layer's do not."""
    params, xs, labels, states = make_problem(model, 4, False)
    _, full = run(model, params, xs, labels, states)
    _, cut = run(model, params, xs, labels, states, truncate=1)
    out_w, out_b = ("W_hy", "b_y") if model == "elman" else ("W_y", "b_y")
    for k in (out_w, out_b):
        np.testing.assert_array_equal(cut[k], full[k])
    recurrent = [k for k in params if k == "W_hh" or k.startswith("U_")]
    for k in recurrent:
        assert not np.allclose(cut[k], full[k]), k


# ----------------------------------------------------------------------------
# Elman without biases is the seed RNN
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("truncate", [None, 1, 2], ids=["full", "K1", "K2"])
@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
def test_elman_without_biases_is_the_seed_rnn(T, batched, truncate):
    params, xs, labels, states = make_problem("elman", T, batched)
    params = {**params, "b_h": np.zeros(N_H), "b_y": np.zeros(N_Y)}
    seed_params = {k: params[k] for k in ("W_xh", "W_hh", "W_hy")}

    loss, grads = reference_elman(params, xs, labels, states["h0"], truncate=truncate)
    seed_loss, seed_grads = reference_loss_and_gradients(seed_params, xs, labels, states["h0"], truncate=truncate)
    assert loss == pytest.approx(seed_loss, rel=SAME_RTOL)
    assert set(seed_grads) == {"W_xh", "W_hh", "W_hy", "h0"}
    for k in seed_grads:
        assert grads[k].shape == seed_grads[k].shape
        np.testing.assert_allclose(grads[k], seed_grads[k], rtol=SAME_RTOL, atol=SAME_ATOL, err_msg=k)
