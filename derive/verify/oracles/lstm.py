"""The LSTM's reference loss and BPTT gradients, written by hand from the
maths: see ``oracle_harness`` for the conventions."""

import numpy as np

from derive.verify.oracles.harness import (
    column,
    finish,
    first_kept_step,
    output_delta,
    run_batched,
    sigmoid,
    softmax_and_loss,
    zero_grads,
)

__all__ = ["reference_lstm"]

# Parameter shapes in terms of the sizes "x" (n_x), "h" (n_h) and "y" (n_y).
LSTM_SHAPES = {
    **{f"W_{gate}": ("h", "x") for gate in "fiog"},
    **{f"U_{gate}": ("h", "h") for gate in "fiog"},
    **{f"b_{gate}": ("h",) for gate in "fiog"},
    "W_y": ("y", "h"),
    "b_y": ("y",),
}


# ----------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------


def _lstm_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W = {gate: P[f"W_{gate}"] for gate in "fiog"}
    U = {gate: P[f"U_{gate}"] for gate in "fiog"}
    b = {gate: column(P[f"b_{gate}"]) for gate in "fiog"}
    W_y, b_y = P["W_y"], column(P["b_y"])

    def pre(gate, t):  # pre-activation of a gate at step t
        return W[gate] @ x[t] + U[gate] @ h[t - 1] + b[gate]

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, c, tc, p = {}, {}, {}, {}, {}
    f, i, o, g = {}, {}, {}, {}
    h[0] = column(init["h0"])
    c[0] = column(init["c0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = column(xs[t - 1])
        f[t] = sigmoid(pre("f", t))
        i[t] = sigmoid(pre("i", t))
        o[t] = sigmoid(pre("o", t))
        g[t] = np.tanh(pre("g", t))
        c[t] = f[t] * c[t - 1] + i[t] * g[t]
        tc[t] = np.tanh(c[t])
        h[t] = o[t] * tc[t]
        y = W_y @ h[t] + b_y
        p[t], J_t = softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    grad = zero_grads(P)
    dh0 = np.zeros_like(h[0])
    dc0 = np.zeros_like(c[0])
    for t in range(1, T + 1):
        dy = output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        grad["W_y"] += dy @ h[t].T
        grad["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = first_kept_step(t, truncate)
        dh = W_y.T @ dy  # dJ_t/dh_t
        dc = np.zeros_like(c[t])  # dJ_t/dc_t through c_{t+1}: none, J_t does not see step t+1
        for k in range(t, k_min - 1, -1):
            # h_k = o_k * tanh(c_k)
            do = dh * tc[k]
            dc = dc + dh * o[k] * (1.0 - tc[k] ** 2)  # now the total dJ_t/dc_k
            # c_k = f_k * c_{k-1} + i_k * g_k
            df = dc * c[k - 1]
            di = dc * g[k]
            dg = dc * i[k]
            # Through the nonlinearities to the pre-activations a_k.
            da = {
                "f": df * f[k] * (1.0 - f[k]),
                "i": di * i[k] * (1.0 - i[k]),
                "o": do * o[k] * (1.0 - o[k]),
                "g": dg * (1.0 - g[k] ** 2),
            }
            for gate in "fiog":
                grad[f"W_{gate}"] += da[gate] @ x[k].T
                grad[f"U_{gate}"] += da[gate] @ h[k - 1].T
                grad[f"b_{gate}"] += da[gate]
            dh = sum(U[gate].T @ da[gate] for gate in "fiog")  # dJ_t/dh_{k-1}
            dc = dc * f[k]  # dJ_t/dc_{k-1} through c_k (h_{k-1}'s path is added at step k-1)
        if k_min == 1:
            # The k = 1 term was kept: dh, dc are dJ_t/dh_0, dJ_t/dc_0 (h_0, c_0 are independent inputs).
            dh0 += dh
            dc0 += dc

    grads = finish(P, grad)
    grads["h0"] = dh0.reshape(-1)
    grads["c0"] = dc0.reshape(-1)
    return loss, grads


def reference_lstm(params, xs, labels, h0=None, c0=None, truncate=None):
    """Total cross-entropy loss of an LSTM (no peepholes) and its BPTT gradients.

    Model (column vectors, ``*`` elementwise, t = 1..T)::

        f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)
        i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)
        g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)
        y_t = W_y h_t + b_y
        J_t = -log softmax(y_t)[label_t],      J = sum_t J_t

    Backward pass, for the loss term J_t, k = t, t-1, ... (``a^f_k`` etc. the
    gates' pre-activations; dc carries dJ_t/dc_k through c_{k+1}, zero at k = t)::

        dy_t      = p_t - onehot(label_t);     dW_y += dy_t h_t^T;  db_y += dy_t
        dh_t      = W_y^T dy_t
        do_k      = dh_k * tanh(c_k)
        dc_k      = dc_k + dh_k * o_k * (1 - tanh(c_k)**2)
        df_k      = dc_k * c_{k-1};   di_k = dc_k * g_k;   dg_k = dc_k * i_k
        da^f_k    = df_k * f_k (1 - f_k)   (likewise i, o);   da^g_k = dg_k * (1 - g_k**2)
        dW_q     += da^q_k x_k^T;   dU_q += da^q_k h_{k-1}^T;   db_q += da^q_k     (q = f, i, o, g)
        dh_{k-1}  = sum_q U_q^T da^q_k
        dc_{k-1}  = dc_k * f_k                 (after k = 1: the contributions to dh_0, dc_0)

    Parameters
    ----------
    params : dict
        ``W_f, W_i, W_o, W_g`` (n_h, n_x); ``U_f, U_i, U_o, U_g`` (n_h, n_h);
        ``b_f, b_i, b_o, b_g`` (n_h,); ``W_y`` (n_y, n_h); ``b_y`` (n_y,).
    xs, labels :
        As for :func:`reference_elman`.
    h0, c0 : array_like, optional
        Initial hidden and cell states, (n_h,) or batched (B, n_h); zeros if None.
    truncate : int or None
        None for full BPTT; K >= 1 keeps, for each J_t, only the steps k > t - K,
        i.e. (h_{t-K}, c_{t-K}) is treated as a constant (see the module
        docstring).  J_t reaches ``h0`` and ``c0`` only if t <= K.

    Returns
    -------
    loss : float
        J, summed over time (and over the batch).
    grads : dict
        Every parameter (summed over the batch), ``"h0"`` and ``"c0"`` (per
        sequence); float64, shaped like what they differentiate.
    """
    return run_batched(_lstm_sequence, LSTM_SHAPES, ("h0", "c0"), params, xs, labels, {"h0": h0, "c0": c0}, truncate)
