"""Sequence regression with a real target at every step, hand-written as people write it: the corpus
cell ``state_loss`` (h = tanh(W x + U h[t-1] + b), J = sum_t |h_t - r_t|^2 / 2), inputs (T, n_x) rows
and targets (T, n_h) rows.  ``regress`` is right; ``regress_no_recurrence`` forgets dh_next."""

import numpy as np


def _regress(params, xs, targets, h0, carry=True):
    W, U, b = params["W"], params["U"], params["b"]
    hs, loss = {-1: h0}, 0.0
    for t in range(len(xs)):
        hs[t] = np.tanh(W @ xs[t] + U @ hs[t - 1] + b)
        loss += 0.5 * np.sum((hs[t] - targets[t]) ** 2)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        dh = hs[t] - targets[t] + (dh_next if carry else 0)
        dz = (1 - hs[t] ** 2) * dh
        dW += np.outer(dz, xs[t])
        dU += np.outer(dz, hs[t - 1])
        db += dz
        dh_next = U.T @ dz
    return loss, {"W": dW, "U": dU, "b": db}


def regress(params, xs, targets, h0):
    return _regress(params, xs, targets, h0)


def regress_no_recurrence(params, xs, targets, h0):
    return _regress(params, xs, targets, h0, carry=False)
