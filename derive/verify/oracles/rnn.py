"""Hand-written reference implementation of the seed RNN's loss and BPTT gradients.

This module is the yardstick against which the symbolically derived, generated
NumPy code is checked.  It is deliberately *independent* of the generator: it
is written directly from the maths, in the style of Karpathy's min-char-rnn
``lossFun`` (plain Python loops over time, column vectors, dictionaries keyed
by the time step ``t``), and imports nothing but NumPy.

Model (column vectors, t = 1..T, h_0 given -- zeros by default)::

    z_t = W_xh x_t + W_hh h_{t-1}
    h_t = tanh(z_t)
    y_t = W_hy h_t
    p_t = softmax(y_t)
    J_t = -log p_t[label_t]
    J   = sum_t J_t                      (total loss, not the mean)

Backward pass.  With ``dz_k`` denoting the gradient of the loss term currently
being propagated with respect to ``z_k``::

    dy_t      = p_t - onehot(label_t)
    dW_hy    += dy_t h_t^T
    dh_t      = W_hy^T dy_t                       (contribution of J_t only)
    dz_k      = dh_k * (1 - h_k**2)
    dW_xh    += dz_k x_k^T
    dW_hh    += dz_k h_{k-1}^T
    dh_{k-1}  = W_hh^T dz_k

Truncated BPTT (``truncate=K``) follows the WildML tutorial's
``bptt_truncate``: the gradient of each J_t is propagated back through
z_t, z_{t-1}, ..., z_{max(1, t-K+1)} only, i.e. only the terms with k > t - K
are kept in the inner sum over k.  This is implemented the naive way: for
every t a separate backward loop runs from k = t down to k = max(1, t-K+1).
The contribution of J_t to ``grads["h0"]`` is ``W_hh^T dz_1``; it is included
exactly when the k = 1 term is kept, i.e. when 1 > t - K (t <= K).
``truncate=None`` means full BPTT (equivalent to any K >= T).  The gradient
with respect to W_hy is never truncated (it involves no recurrence).
"""

import numpy as np

__all__ = ["reference_loss_and_gradients"]


def _softmax(y):
    """Numerically stable softmax of a column vector."""
    e = np.exp(y - np.max(y))
    return e / np.sum(e)


def _single_sequence(W_xh, W_hh, W_hy, xs, labels, h0, truncate):
    """Loss and gradients for one sequence.

    xs: (T, n_x); labels: (T,) ints; h0: (n_h,).
    Returns (loss, dW_xh, dW_hh, dW_hy, dh0) with dh0 of shape (n_h,).
    """
    T = xs.shape[0]
    n_h = W_hh.shape[0]

    # ---------------- forward pass (time index t = 1..T) ----------------
    x, z, h, p = {}, {}, {}, {}
    h[0] = h0.reshape(n_h, 1)
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = xs[t - 1].reshape(-1, 1)
        z[t] = W_xh @ x[t] + W_hh @ h[t - 1]
        h[t] = np.tanh(z[t])
        y = W_hy @ h[t]
        p[t] = _softmax(y)
        loss += -np.log(p[t][int(labels[t - 1]), 0])

    # ---------------- backward pass ----------------
    dW_xh = np.zeros_like(W_xh)
    dW_hh = np.zeros_like(W_hh)
    dW_hy = np.zeros_like(W_hy)
    dh0 = np.zeros((n_h, 1))

    for t in range(1, T + 1):
        # Output layer: dJ_t/dy_t = p_t - onehot(label_t).
        dy = p[t].copy()
        dy[int(labels[t - 1]), 0] -= 1.0
        dW_hy += dy @ h[t].T

        # Propagate dJ_t back through time, from z_t down to z_{k_min}.
        k_min = 1 if truncate is None else max(1, t - truncate + 1)
        dh = W_hy.T @ dy  # dJ_t/dh_t
        for k in range(t, k_min - 1, -1):
            dz = dh * (1.0 - h[k] ** 2)  # dJ_t/dz_k
            dW_xh += dz @ x[k].T
            dW_hh += dz @ h[k - 1].T
            dh = W_hh.T @ dz  # dJ_t/dh_{k-1}
        if k_min == 1:
            # The k = 1 term was kept, so dh now holds dJ_t/dh_0.
            dh0 += dh

    return loss, dW_xh, dW_hh, dW_hy, dh0.reshape(n_h)


def reference_loss_and_gradients(params, xs, labels, h0=None, truncate=None):
    """Total cross-entropy loss of the seed RNN and its (truncated) BPTT gradients.

    Parameters
    ----------
    params : dict
        ``"W_xh"`` (n_h, n_x), ``"W_hh"`` (n_h, n_h), ``"W_hy"`` (n_y, n_h).
    xs : array_like
        Inputs, shape (T, n_x), or batched (T, B, n_x).
    labels : array_like of int
        Target class per step, shape (T,), or batched (T, B).
    h0 : array_like, optional
        Initial hidden state, shape (n_h,) or batched (B, n_h); zeros if None.
    truncate : int or None
        None for full BPTT.  An int K >= 1 keeps, for each J_t, only the terms
        with k > t - K (the gradient of J_t flows back through z_t..z_{t-K+1});
        J_t contributes to ``grads["h0"]`` only if t <= K.  See module docstring.

    Returns
    -------
    loss : float
        J = sum_t J_t (summed over the batch too, if batched).
    grads : dict
        ``"W_xh"``, ``"W_hh"``, ``"W_hy"`` (summed over the batch) and ``"h0"``
        (per sequence: (n_h,) unbatched, (B, n_h) batched), all float64.
    """
    if truncate is not None:
        truncate = int(truncate)
        if truncate < 1:
            raise ValueError("truncate must be None or an int >= 1")

    W_xh = np.asarray(params["W_xh"], dtype=np.float64)
    W_hh = np.asarray(params["W_hh"], dtype=np.float64)
    W_hy = np.asarray(params["W_hy"], dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    labels = np.asarray(labels)
    n_h = W_hh.shape[0]

    if xs.ndim == 2:
        # Single sequence.
        h0_ = np.zeros(n_h) if h0 is None else np.asarray(h0, dtype=np.float64)
        loss, dW_xh, dW_hh, dW_hy, dh0 = _single_sequence(W_xh, W_hh, W_hy, xs, labels, h0_, truncate)
        grads = {"W_xh": dW_xh, "W_hh": dW_hh, "W_hy": dW_hy, "h0": dh0}
        return float(loss), grads

    # Batched: xs (T, B, n_x), labels (T, B), h0 (B, n_h).
    B = xs.shape[1]
    if h0 is None:
        h0_ = np.zeros((B, n_h))
    else:
        h0_ = np.asarray(h0, dtype=np.float64)
    total = 0.0
    grads = {"W_xh": np.zeros_like(W_xh), "W_hh": np.zeros_like(W_hh), "W_hy": np.zeros_like(W_hy)}
    dh0s = []
    for b in range(B):
        loss, dW_xh, dW_hh, dW_hy, dh0 = _single_sequence(W_xh, W_hh, W_hy, xs[:, b, :], labels[:, b], h0_[b], truncate)
        total += loss
        grads["W_xh"] += dW_xh
        grads["W_hh"] += dW_hh
        grads["W_hy"] += dW_hy
        dh0s.append(dh0)
    grads["h0"] = np.stack(dh0s, axis=0).reshape(B, n_h)
    return float(total), grads
