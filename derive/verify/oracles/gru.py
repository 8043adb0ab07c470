"""The GRU's reference loss and BPTT gradients, written by hand from the
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

__all__ = ["reference_gru"]

# Parameter shapes in terms of the sizes "x" (n_x), "h" (n_h) and "y" (n_y).
GRU_SHAPES = {
    **{f"W_{gate}": ("h", "x") for gate in "run"},
    **{f"U_{gate}": ("h", "h") for gate in "run"},
    **{f"b_{gate}": ("h",) for gate in "run"},
    "W_y": ("y", "h"),
    "b_y": ("y",),
}


# ----------------------------------------------------------------------------
# GRU (Cho et al., 2014: reset applied to h_{t-1} before U_n)
# ----------------------------------------------------------------------------


def _gru_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W = {gate: P[f"W_{gate}"] for gate in "run"}
    U = {gate: P[f"U_{gate}"] for gate in "run"}
    b = {gate: column(P[f"b_{gate}"]) for gate in "run"}
    W_y, b_y = P["W_y"], column(P["b_y"])

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, p = {}, {}, {}
    r, u, n, rh = {}, {}, {}, {}
    h[0] = column(init["h0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = column(xs[t - 1])
        r[t] = sigmoid(W["r"] @ x[t] + U["r"] @ h[t - 1] + b["r"])
        u[t] = sigmoid(W["u"] @ x[t] + U["u"] @ h[t - 1] + b["u"])
        rh[t] = r[t] * h[t - 1]
        n[t] = np.tanh(W["n"] @ x[t] + U["n"] @ rh[t] + b["n"])
        h[t] = u[t] * h[t - 1] + (1.0 - u[t]) * n[t]
        y = W_y @ h[t] + b_y
        p[t], J_t = softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    grad = zero_grads(P)
    dh0 = np.zeros_like(h[0])
    for t in range(1, T + 1):
        dy = output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        grad["W_y"] += dy @ h[t].T
        grad["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = first_kept_step(t, truncate)
        dh = W_y.T @ dy  # dJ_t/dh_t
        for k in range(t, k_min - 1, -1):
            # h_k = u_k * h_{k-1} + (1 - u_k) * n_k
            du = dh * (h[k - 1] - n[k])
            dn = dh * (1.0 - u[k])
            dh_prev = dh * u[k]  # direct path h_k <- h_{k-1}
            # n_k = tanh(a^n_k),  a^n_k = W_n x_k + U_n (r_k * h_{k-1}) + b_n
            da_n = dn * (1.0 - n[k] ** 2)
            grad["W_n"] += da_n @ x[k].T
            grad["U_n"] += da_n @ rh[k].T
            grad["b_n"] += da_n
            drh = U["n"].T @ da_n  # dJ_t/d(r_k * h_{k-1})
            dr = drh * h[k - 1]
            dh_prev += drh * r[k]  # path through the reset product
            # r_k, u_k = sigmoid(W x_k + U h_{k-1} + b)
            da_r = dr * r[k] * (1.0 - r[k])
            da_u = du * u[k] * (1.0 - u[k])
            for gate, da in (("r", da_r), ("u", da_u)):
                grad[f"W_{gate}"] += da @ x[k].T
                grad[f"U_{gate}"] += da @ h[k - 1].T
                grad[f"b_{gate}"] += da
                dh_prev += U[gate].T @ da  # paths through the gates
            dh = dh_prev  # dJ_t/dh_{k-1}
        if k_min == 1:
            dh0 += dh  # the k = 1 term was kept: dh is dJ_t/dh_0

    grads = finish(P, grad)
    grads["h0"] = dh0.reshape(-1)
    return loss, grads


def reference_gru(params, xs, labels, h0=None, truncate=None):
    """Total cross-entropy loss of a GRU (Cho et al., 2014) and its BPTT gradients.

    The original formulation: the reset gate multiplies h_{t-1} *before* the
    recurrent matrix U_n (not U_n h_{t-1} afterwards, as in cuDNN/PyTorch), and
    the update gate u_t (Cho et al.'s z_t) weights the *old* state::

        r_t = sigmoid(W_r x_t + U_r h_{t-1} + b_r)
        u_t = sigmoid(W_u x_t + U_u h_{t-1} + b_u)
        n_t = tanh(W_n x_t + U_n (r_t * h_{t-1}) + b_n)
        h_t = u_t * h_{t-1} + (1 - u_t) * n_t
        y_t = W_y h_t + b_y
        J_t = -log softmax(y_t)[label_t],      J = sum_t J_t

    Backward pass, for the loss term J_t, k = t, t-1, ...::

        dy_t      = p_t - onehot(label_t);     dW_y += dy_t h_t^T;  db_y += dy_t
        dh_t      = W_y^T dy_t
        du_k      = dh_k * (h_{k-1} - n_k);    dn_k = dh_k * (1 - u_k)
        da^n_k    = dn_k * (1 - n_k**2)
        dW_n     += da^n_k x_k^T;   dU_n += da^n_k (r_k * h_{k-1})^T;   db_n += da^n_k
        drh_k     = U_n^T da^n_k;   dr_k = drh_k * h_{k-1}
        da^r_k    = dr_k * r_k (1 - r_k);      da^u_k = du_k * u_k (1 - u_k)
        dW_q     += da^q_k x_k^T;   dU_q += da^q_k h_{k-1}^T;   db_q += da^q_k     (q = r, u)
        dh_{k-1}  = dh_k * u_k + drh_k * r_k + U_r^T da^r_k + U_u^T da^u_k
                                               (after k = 1: the contribution to dh_0)

    Parameters
    ----------
    params : dict
        ``W_r, W_u, W_n`` (n_h, n_x); ``U_r, U_u, U_n`` (n_h, n_h);
        ``b_r, b_u, b_n`` (n_h,); ``W_y`` (n_y, n_h); ``b_y`` (n_y,).
    xs, labels, h0 :
        As for :func:`reference_elman`.
    truncate : int or None
        None for full BPTT; K >= 1 keeps, for each J_t, only the steps k > t - K
        (see the module docstring).  J_t reaches ``h0`` only if t <= K.

    Returns
    -------
    loss : float
        J, summed over time (and over the batch).
    grads : dict
        Every parameter (summed over the batch) and ``"h0"`` (per sequence);
        float64, shaped like what they differentiate.
    """
    return run_batched(_gru_sequence, GRU_SHAPES, ("h0",), params, xs, labels, {"h0": h0}, truncate)
