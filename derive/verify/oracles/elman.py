"""The Elman RNN's reference loss and BPTT gradients, written by hand from the
maths: see ``oracle_harness`` for the conventions."""

import numpy as np

from derive.verify.oracles.harness import (
    column,
    finish,
    first_kept_step,
    output_delta,
    run_batched,
    softmax_and_loss,
    zero_grads,
)

__all__ = ["reference_elman"]

# Parameter shapes in terms of the sizes "x" (n_x), "h" (n_h) and "y" (n_y).
ELMAN_SHAPES = {
    "W_xh": ("h", "x"),
    "W_hh": ("h", "h"),
    "W_hy": ("y", "h"),
    "b_h": ("h",),
    "b_y": ("y",),
}


# ----------------------------------------------------------------------------
# Elman RNN
# ----------------------------------------------------------------------------


def _elman_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W_xh, W_hh, W_hy = P["W_xh"], P["W_hh"], P["W_hy"]
    b_h, b_y = column(P["b_h"]), column(P["b_y"])

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, p = {}, {}, {}
    h[0] = column(init["h0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = column(xs[t - 1])
        z = W_xh @ x[t] + W_hh @ h[t - 1] + b_h
        h[t] = np.tanh(z)
        y = W_hy @ h[t] + b_y
        p[t], J_t = softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    g = zero_grads(P)
    dh0 = np.zeros_like(h[0])
    for t in range(1, T + 1):
        dy = output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        g["W_hy"] += dy @ h[t].T
        g["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = first_kept_step(t, truncate)
        dh = W_hy.T @ dy  # dJ_t/dh_t
        for k in range(t, k_min - 1, -1):
            dz = dh * (1.0 - h[k] ** 2)  # dJ_t/dz_k
            g["W_xh"] += dz @ x[k].T
            g["W_hh"] += dz @ h[k - 1].T
            g["b_h"] += dz
            dh = W_hh.T @ dz  # dJ_t/dh_{k-1}
        if k_min == 1:
            dh0 += dh  # the k = 1 term was kept: dh is dJ_t/dh_0

    grads = finish(P, g)
    grads["h0"] = dh0.reshape(-1)
    return loss, grads


def reference_elman(params, xs, labels, h0=None, truncate=None):
    """Total cross-entropy loss of an Elman RNN (with biases) and its BPTT gradients.

    Model (column vectors, t = 1..T)::

        z_t = W_xh x_t + W_hh h_{t-1} + b_h
        h_t = tanh(z_t)
        y_t = W_hy h_t + b_y
        J_t = -log softmax(y_t)[label_t],      J = sum_t J_t

    Backward pass, for the loss term J_t (dz_k = dJ_t/dz_k, k = t, t-1, ...)::

        dy_t      = p_t - onehot(label_t)
        dW_hy    += dy_t h_t^T                 db_y += dy_t
        dh_t      = W_hy^T dy_t
        dz_k      = dh_k * (1 - h_k**2)
        dW_xh    += dz_k x_k^T
        dW_hh    += dz_k h_{k-1}^T             db_h += dz_k
        dh_{k-1}  = W_hh^T dz_k                (after k = 1: the contribution to dh_0)

    With ``b_h = b_y = 0`` this is the seed RNN of :mod:`derive.verify.oracles.rnn`.

    Parameters
    ----------
    params : dict
        ``W_xh`` (n_h, n_x), ``W_hh`` (n_h, n_h), ``W_hy`` (n_y, n_h), ``b_h`` (n_h,), ``b_y`` (n_y,).
    xs : array_like
        (T, n_x), or batched (T, B, n_x).
    labels : array_like of int
        (T,), or batched (T, B); values in [0, n_y).
    h0 : array_like, optional
        (n_h,), or batched (B, n_h); zeros if None.
    truncate : int or None
        None for full BPTT; K >= 1 keeps, for each J_t, only the steps k > t - K
        (see the module docstring).  J_t reaches ``h0`` only if t <= K.

    Returns
    -------
    loss : float
        J, summed over time (and over the batch).
    grads : dict
        Every parameter (summed over the batch) and ``"h0"`` (per sequence:
        (n_h,) unbatched, (B, n_h) batched); float64, shaped like what they differentiate.
    """
    return run_batched(_elman_sequence, ELMAN_SHAPES, ("h0",), params, xs, labels, {"h0": h0}, truncate)
