"""Tests for derive.verify.oracles.rnn: the hand-written BPTT yardstick.

The reference is checked against central finite differences of its own loss,
against a loss written out by hand for T = 1, and (for truncated BPTT) against
hand-computed / finite-difference versions of the truncation convention.
"""

import math

import numpy as np
import pytest

from conftest import fd_grad
from derive.verify.oracles.rnn import reference_loss_and_gradients

N_X, N_H, N_Y = 3, 4, 5
B = 3
FD_RTOL = 1e-6  # relative tolerance for analytic vs finite-difference gradients
FD_ATOL = 1e-8  # absolute floor, for gradient entries that are ~0
PARAM_KEYS = ("W_xh", "W_hh", "W_hy")


def make_problem(T, batch=None, seed=0):
    rng = np.random.default_rng(seed + 100 * T + (0 if batch is None else 7))
    params = {
        "W_xh": 0.5 * rng.standard_normal((N_H, N_X)),
        "W_hh": 0.5 * rng.standard_normal((N_H, N_H)),
        "W_hy": 0.5 * rng.standard_normal((N_Y, N_H)),
    }
    if batch is None:
        xs = rng.standard_normal((T, N_X))
        labels = rng.integers(0, N_Y, size=T)
        h0 = 0.5 * rng.standard_normal(N_H)
    else:
        xs = rng.standard_normal((T, batch, N_X))
        labels = rng.integers(0, N_Y, size=(T, batch))
        h0 = 0.5 * rng.standard_normal((batch, N_H))
    return params, xs, labels, h0


def fd_all(params, xs, labels, h0):
    """Finite-difference gradients of the total loss for every parameter and h0."""
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    h0 = np.array(h0, dtype=np.float64)

    def f():
        return reference_loss_and_gradients(params, xs, labels, h0)[0]

    out = {k: fd_grad(f, params[k]) for k in PARAM_KEYS}
    out["h0"] = fd_grad(f, h0)
    return out


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_gradients_match_finite_differences(T, batched):
    params, xs, labels, h0 = make_problem(T, batch=B if batched else None)
    loss, grads = reference_loss_and_gradients(params, xs, labels, h0)
    assert isinstance(loss, float)
    assert set(grads) == {"W_xh", "W_hh", "W_hy", "h0"}
    for k in PARAM_KEYS:
        assert grads[k].shape == params[k].shape
        assert grads[k].dtype == np.float64
    assert grads["h0"].shape == ((B, N_H) if batched else (N_H,))
    assert grads["h0"].dtype == np.float64

    num = fd_all(params, xs, labels, h0)
    for k in (*PARAM_KEYS, "h0"):
        np.testing.assert_allclose(grads[k], num[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"gradient mismatch for {k}")


def test_batched_is_sum_of_sequences():
    T = 3
    params, xs, labels, h0 = make_problem(T, batch=B)
    loss, grads = reference_loss_and_gradients(params, xs, labels, h0)
    total = 0.0
    for b in range(B):
        lb, gb = reference_loss_and_gradients(params, xs[:, b], labels[:, b], h0[b])
        total += lb
        np.testing.assert_allclose(grads["h0"][b], gb["h0"], rtol=1e-12, atol=0)
    assert loss == pytest.approx(total, rel=1e-12)


def test_default_h0_is_zeros():
    params, xs, labels, _ = make_problem(3)
    l1, g1 = reference_loss_and_gradients(params, xs, labels)
    l2, g2 = reference_loss_and_gradients(params, xs, labels, np.zeros(N_H))
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    params, xs, labels, _ = make_problem(3, batch=B)
    _, g = reference_loss_and_gradients(params, xs, labels)
    assert g["h0"].shape == (B, N_H)


def test_loss_T1_by_hand():
    params, xs, labels, h0 = make_problem(1)
    Wxh, Whh, Why = params["W_xh"], params["W_hh"], params["W_hy"]
    x, label = xs[0], int(labels[0])
    # Scalar loops, no vectorisation, no max-subtraction.
    h = []
    for i in range(N_H):
        zi = sum(Wxh[i, j] * x[j] for j in range(N_X)) + sum(Whh[i, j] * h0[j] for j in range(N_H))
        h.append(math.tanh(zi))
    y = [sum(Why[m, i] * h[i] for i in range(N_H)) for m in range(N_Y)]
    expected = -math.log(math.exp(y[label]) / sum(math.exp(v) for v in y))

    loss, _ = reference_loss_and_gradients(params, xs, labels, h0)
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_truncate_at_least_T_equals_full(T, batched):
    params, xs, labels, h0 = make_problem(T, batch=B if batched else None)
    loss, full = reference_loss_and_gradients(params, xs, labels, h0)
    for K in (T, T + 1, T + 5):
        lk, gk = reference_loss_and_gradients(params, xs, labels, h0, truncate=K)
        assert lk == loss
        for k in full:
            np.testing.assert_allclose(gk[k], full[k], rtol=1e-12, atol=1e-15)


def _forward(params, xs, h0):
    hs = [np.asarray(h0, dtype=np.float64)]
    ps = []
    for x in xs:
        h = np.tanh(params["W_xh"] @ x + params["W_hh"] @ hs[-1])
        y = params["W_hy"] @ h
        e = np.exp(y)
        hs.append(h)
        ps.append(e / e.sum())
    return hs, ps


def test_truncate_1_is_k_equals_t_only():
    T = 3
    params, xs, labels, h0 = make_problem(T)
    hs, ps = _forward(params, xs, h0)  # hs[t] = h_t, hs[0] = h_0
    dWhh = np.zeros((N_H, N_H))
    dh0 = np.zeros(N_H)
    for t in range(1, T + 1):
        dy = ps[t - 1].copy()
        dy[labels[t - 1]] -= 1.0
        dz_t = (params["W_hy"].T @ dy) * (1.0 - hs[t] ** 2)  # dJ_t/dz_t
        dWhh += np.outer(dz_t, hs[t - 1])  # k = t term only
        if t == 1:
            dh0 += params["W_hh"].T @ dz_t
    _, g = reference_loss_and_gradients(params, xs, labels, h0, truncate=1)
    np.testing.assert_allclose(g["W_hh"], dWhh, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g["h0"], dh0, rtol=1e-12, atol=1e-15)
    # W_hy has no recurrence, so truncation does not affect it.
    _, full = reference_loss_and_gradients(params, xs, labels, h0)
    np.testing.assert_allclose(g["W_hy"], full["W_hy"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_truncate_K_matches_stop_gradient_fd(K):
    """Truncation = for each J_t, treat h_{t-K} as a constant, then differentiate.

    Finite differences of J_t recomputed from step s = max(1, t-K+1) with the
    (unperturbed) state h_{s-1} frozen; h0 is only reached when s = 1.
    """
    T = 4
    params, xs, labels, h0 = make_problem(T, seed=3)
    hs, _ = _forward(params, xs, h0)
    pert = {k: np.array(v) for k, v in params.items()}
    h0p = np.array(h0, dtype=np.float64)
    expected = {k: np.zeros_like(v) for k, v in params.items()}
    expected["h0"] = np.zeros(N_H)

    for t in range(1, T + 1):
        s = max(1, t - K + 1)

        def J_t():
            h = h0p if s == 1 else hs[s - 1]  # frozen unless it is h0
            for k in range(s, t + 1):
                h = np.tanh(pert["W_xh"] @ xs[k - 1] + pert["W_hh"] @ h)
            y = pert["W_hy"] @ h
            y = y - y.max()
            return -(y[labels[t - 1]] - np.log(np.exp(y).sum()))

        for k in PARAM_KEYS:
            expected[k] += fd_grad(J_t, pert[k])
        expected["h0"] += fd_grad(J_t, h0p)

    _, g = reference_loss_and_gradients(params, xs, labels, h0, truncate=K)
    for k in expected:
        np.testing.assert_allclose(
            g[k], expected[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"truncate={K} mismatch for {k}"
        )
