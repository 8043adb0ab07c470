"""Losses of probabilities computed from the logits: binary_cross_entropy(sigmoid(y), r), written
inline or through a named p = sigmoid(y), and -sum(q * log(softmax(y))), stay finite and exact where
the probabilities underflow to 0 or round to 1 (logits of size 2000), as cross_entropy(softmax(y)) does.

The yardstick is a loop of our own over the cell's equations, with each loss written from the
logits by the identities log sigmoid(y) = -log(1 + exp(-y)) and log softmax(y) = y - logsumexp(y)."""

import functools

import numpy as np
import pytest

from conftest import CORPUS
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.spec.parser import read
from derive.verify.report import load_module

RTOL = 1e-12  # a loop of a few steps in float64, against the same maths in another order
LOGIT = 2000.0  # exp(800) overflows float64; sigmoid(-800) underflows to 0 and sigmoid(800) rounds to 1


@functools.cache
def module(cell: str):
    return load_module(module_source(derive(read(CORPUS / f"{cell}.cell"), 2)), f"{cell}_stable")


def _sigmoid(y):
    return np.exp(-np.logaddexp(0, -y))


def _states(params, xs, activation):
    h, out = np.zeros(params["W"].shape[0]), []
    for x in xs:
        h = activation(params["W"] @ x + params["U"] @ h + params.get("b", 0))
        out.append(h)
    return out


def _huge_logits(params, T, n_x, rng):
    """Inputs that drive the logits to about +-LOGIT: V scaled so that |V h| is large."""
    xs = rng.standard_normal((T, n_x))
    params = dict(params, V=params["V"] * LOGIT / np.abs(params["V"]).sum(axis=1, keepdims=True))
    return params, xs


@pytest.mark.parametrize("cell", ["multilabel", "multilabel_named"])
def test_binary_cross_entropy_of_sigmoid_is_exact_where_probabilities_saturate(cell):
    m = module(cell)
    rng = np.random.default_rng(3)
    params, xs = _huge_logits(m.init_params(3, 4, 5, seed=1), 2, 3, rng)
    r = rng.uniform(0, 1, (2, 5))
    named = cell == "multilabel_named"  # many-to-one, relu units, its loss at the last step only
    hs = _states(params, xs, (lambda a: np.maximum(a, 0)) if named else np.tanh)
    steps = [1] if named else [0, 1]
    ys = {t: params["V"] @ hs[t] + params.get("c", 0) for t in steps}
    assert max(np.abs(y).max() for y in ys.values()) > 100  # the probabilities saturate
    loss, grads = m.loss_and_gradients(params, xs, r[-1] if named else r)
    # binary_cross_entropy(sigmoid(y), r) = softplus(y) - r y; multilabel adds 1/2 of it written by hand
    scale = 1.0 if named else 1.5
    want = scale * sum(np.sum(np.logaddexp(0, ys[t]) - r[t] * ys[t]) for t in steps)
    dV = scale * sum(np.outer(_sigmoid(ys[t]) - r[t], hs[t]) for t in steps)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert abs(loss - want) <= RTOL * abs(want)
    assert np.abs(grads["V"] - dV).max() <= RTOL * np.abs(dV).max()


def test_log_softmax_of_soft_targets_is_exact_where_probabilities_underflow():
    m = module("soft_targets")
    rng = np.random.default_rng(4)
    params, xs = _huge_logits(m.init_params(3, 4, 5, seed=2), 2, 3, rng)
    q = rng.dirichlet(np.ones(5), size=2)
    hs = _states(params, xs, lambda a: np.logaddexp(0, a) - 1)
    ys = [params["V"] @ h for h in hs]
    log_p = [y - y.max() - np.log(np.exp(y - y.max()).sum()) for y in ys]
    assert min(lp.min() for lp in log_p) < -745  # exp of it underflows: log(p) of the probabilities would be -inf
    loss, grads = m.loss_and_gradients(params, xs, q)
    want = -sum(np.dot(q[t], log_p[t]) for t in range(2))
    dV = sum(np.outer(np.exp(log_p[t]) - q[t], hs[t]) for t in range(2))  # sum(q) = 1: softmax(y) - q
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert abs(loss - want) <= RTOL * abs(want)
    assert np.abs(grads["V"] - dV).max() <= RTOL * np.abs(dV).max()
