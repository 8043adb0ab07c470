"""The generated module's contract: shapes, batching, dtypes, and errors that name the argument."""

import numpy as np
import pytest

from conftest import generated, load_cell
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import RTOL_EXACT, max_rel_error

N_X, N_H, N_Y = 3, 4, 5
FLOAT32_RTOL = 1e-4


@pytest.fixture(scope="module")
def m():
    return generated(3)


def problem(T=3, B=None, seed=0):
    rng = np.random.default_rng(seed)
    lead = (T,) if B is None else (T, B)
    return rng.standard_normal(lead + (N_X,)), rng.integers(0, N_Y, lead), rng.standard_normal(lead[1:] + (N_H,))


def test_constants_and_init(m):
    assert m.PARAMS == ("W_xh", "W_hh", "W_hy")
    assert m.STEPS == 3
    params = m.init_params(N_X, N_H, N_Y, seed=1)
    assert {k: v.shape for k, v in params.items()} == {"W_xh": (N_H, N_X), "W_hh": (N_H, N_H), "W_hy": (N_Y, N_H)}
    again = m.init_params(N_X, N_H, N_Y, seed=1)
    assert all(np.array_equal(params[k], again[k]) for k in params)


@pytest.mark.parametrize("impl", ["loss_and_gradients", "gradients_by_definition"])
def test_gradient_shapes_unbatched_and_batched(m, impl):
    params = m.init_params(N_X, N_H, N_Y)
    fn = getattr(m, impl)
    _, g = fn(params, *problem())
    assert {k: v.shape for k, v in g.items()} == {"W_xh": (4, 3), "W_hh": (4, 4), "W_hy": (5, 4), "h0": (4,)}
    _, g = fn(params, *problem(B=2))
    assert g["h0"].shape == (2, 4)


def test_batch_is_the_sum_of_its_sequences(m):
    params = m.init_params(N_X, N_H, N_Y)
    xs, labels, h0 = problem(T=5, B=3)
    loss, grads = m.loss_and_gradients(params, xs, labels, h0)
    parts = [m.loss_and_gradients(params, xs[:, b], labels[:, b], h0[b]) for b in range(3)]
    assert max_rel_error(loss, sum(p[0] for p in parts)) <= RTOL_EXACT
    assert max_rel_error(grads["W_hh"], sum(p[1]["W_hh"] for p in parts)) <= RTOL_EXACT
    assert max_rel_error(grads["h0"][1], parts[1][1]["h0"]) <= RTOL_EXACT


def test_h0_none_means_zeros(m):
    params = m.init_params(N_X, N_H, N_Y)
    xs, labels, _ = problem()
    assert m.loss(params, xs, labels) == m.loss(params, xs, labels, np.zeros(N_H))


def test_loss_is_the_total_not_the_mean(m):
    params = m.init_params(N_X, N_H, N_Y)
    xs, labels, h0 = problem(T=1)
    y = params["W_hy"] @ np.tanh(params["W_xh"] @ xs[0] + params["W_hh"] @ h0)
    expected = -(y[labels[0]] - np.log(np.sum(np.exp(y))))
    assert max_rel_error(m.loss(params, xs, labels, h0), expected) <= RTOL_EXACT


def test_float32_is_kept(m):
    params = {k: v.astype(np.float32) for k, v in m.init_params(N_X, N_H, N_Y).items()}
    xs, labels, h0 = problem(T=6, B=2)
    _, grads = m.loss_and_gradients(params, xs.astype(np.float32), labels, h0.astype(np.float32))
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    ref = reference_loss_and_gradients(params, xs, labels, h0)[1]
    assert max_rel_error(grads["W_hh"], ref["W_hh"]) <= FLOAT32_RTOL


def test_large_logits_do_not_overflow(m):
    params = m.init_params(N_X, N_H, N_Y)
    params["W_hy"] = params["W_hy"] * 1e3
    loss, grads = m.loss_and_gradients(params, *problem())
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_by_definition_survives_underflowing_wrong_classes(m):
    """p of the other classes underflows to 0 exactly: 0 * log 0 and 0 / 0 must count as 0."""
    params = {"W_xh": np.full((N_H, N_X), 5.0), "W_hh": np.zeros((N_H, N_H)), "W_hy": np.zeros((N_Y, N_H))}
    params["W_hy"][0] = 1e3  # y_0 = 1e3 * sum(h) ~ 4e3: p_0 = 1 and the others exp(-4e3) = 0
    xs, labels = np.ones((3, N_X)), np.zeros(3, dtype=int)
    loss, grads = m.gradients_by_definition(params, xs, labels)
    fast_loss, fast = m.loss_and_gradients(params, xs, labels)
    assert loss == fast_loss == 0.0
    for name, g in fast.items():
        assert np.all(np.isfinite(grads[name])) and np.allclose(grads[name], g, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, a: (dict(p, W_hh=p["W_hh"][:, :2]), a), r"params\['W_hh'\]: n_h"),
        (lambda p, a: ({k: v for k, v in p.items() if k != "W_hy"}, a), "params: missing W_hy"),
        (lambda p, a: (p, (a[0][:, :2], a[1], a[2])), "xs: last axis is 2"),
        (lambda p, a: (p, (a[0][0], a[1], a[2])), r"xs: expected shape \(T, n_x\)"),
        (lambda p, a: (p, (a[0], a[1][:2], a[2])), r"labels: expected shape \(3,\)"),
        (lambda p, a: (p, (a[0], a[1] + 0.5, a[2])), "labels: expected integers"),
        (lambda p, a: (p, (a[0], a[1] * 0 + N_Y, a[2])), r"labels: expected class indices in \[0, 5\)"),
        (
            lambda p, a: (p, (a[0], a[1] - 1 - a[1].max(), a[2])),
            r"labels: expected class indices in \[0, 5\), got values in \[-",
        ),
        (lambda p, a: (p, (a[0], (a[1] - a[1].max() - 1).astype(np.int8), a[2])), r"labels: expected class indices"),
        (lambda p, a: ({**p, "W_hh": p["W_hh"][0]}, a), r"params\['W_hh'\]: expected 2 dimensions"),
        (lambda p, a: ({**p, "W_xh": [[1.0]]}, a), r"params\['W_hh'\]: n_h = \d+ here but 1"),
        (lambda p, a: (p, (a[0], a[1], a[2][:3])), r"h0: expected shape \(4,\)"),
        (lambda p, a: (p, (a[0][:0], a[1][:0], a[2])), "xs: expected shape"),
        (lambda p, a: (p, (a[0][:, None][:, :0], a[1][:, None][:, :0], None)), "with T >= 1 and B >= 1, got"),
    ],
    ids=[
        "param-shape",
        "param-missing",
        "xs-width",
        "xs-ndim",
        "labels-shape",
        "labels-float",
        "labels-range",
        "labels-negative",
        "labels-negative-int8",
        "param-ndim",
        "param-as-list",
        "h0",
        "T0",
        "B0",
    ],
)
def test_bad_arguments_name_the_argument(m, change, message):
    params, args = change(m.init_params(N_X, N_H, N_Y), problem())
    with pytest.raises(ValueError, match=message):
        m.loss_and_gradients(params, *args)


def test_by_definition_is_for_its_own_T(m):
    params = m.init_params(N_X, N_H, N_Y)
    with pytest.raises(ValueError, match="derived for T = 3, got T = 4"):
        m.gradients_by_definition(params, *problem(T=4))


def test_a_tied_weight_gradient_adds_its_transposed_place_in_both_paths():
    """y = E^T h: dE gains h_t dJ/dy_t^T, as one product over every step (fast) and per term (by definition)."""
    lines = [line.strip() for line in module_source(derive(load_cell("corpus/tied"), 2)).splitlines()]
    assert (
        "dE = h_rows.T @ dy_rows + da_rows.T @ x_rows  # dJ/dE = sum over t of h_t dJ/dy_t^T + dJ/da_t x_t^T"
    ) in lines
    assert "dE += h_1 @ dJ_1__dy_1" in lines
    assert "dE += (dJ_1__dy_1 @ dy_1__dh_1 @ dh_1__da_1).T @ x_1.T" in lines
