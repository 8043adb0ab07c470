"""Hand-written reference losses and BPTT gradients for an Elman RNN, an LSTM and a GRU.

Like :mod:`derive.reference` (the seed RNN's yardstick), this module is written
directly from the maths, independently of the symbolic generator, in the style
of Karpathy's min-char-rnn ``lossFun``: column vectors, dictionaries keyed by the
time step ``t = 1..T`` (index 0 holds the initial state), plain Python loops over
time, and nothing imported but NumPy.  Every backward pass is written by hand
(deltas carried back through time); nothing here uses finite differences.

Common conventions
------------------
* Output layer and loss, for every cell::

      y_t = W_y h_t + b_y          (W_hy for the Elman cell)
      p_t = softmax(y_t)           (stable: the max is subtracted first)
      J_t = -log p_t[label_t]
      J   = sum_t J_t              (the total, not the mean; summed over the batch too)

  so ``dJ_t/dy_t = p_t - onehot(label_t)`` and the output-layer gradients are
  ``dW_y += dy_t h_t^T``, ``db_y += dy_t``.

* Shapes: ``xs`` is (T, n_x) or, batched, (T, B, n_x); ``labels`` is (T,) or
  (T, B) ints in [0, n_y); initial states are (n_h,) or, batched, (B, n_h), and
  zeros when None.  A batch is handled by running the single-sequence routine
  on every column ``b`` and summing the losses and the weight gradients; the
  initial-state gradients are per sequence, stacked to (B, n_h).  Every
  gradient has the shape of what it differentiates and is float64.

* Truncated BPTT (``truncate=K``), in the sense of the WildML tutorial's
  ``bptt_truncate`` as used by :mod:`derive.reference`: for each loss term J_t
  only the terms of the chain-rule sum over steps k with ``k > t - K`` are
  kept, i.e. the gradient of J_t flows back through at most K applications of
  the cell (steps t, t-1, ..., max(1, t-K+1)).  Equivalently, J_t is
  differentiated with the recurrent state entering step t-K+1 -- h_{t-K}, and
  for the LSTM also c_{t-K} -- held constant, unless that state is the initial
  state, which is an input of the loss like any parameter.  Hence J_t
  contributes to ``grads["h0"]`` (and ``grads["c0"]``) only when t <= K.  This
  is implemented the naive way: for every t a separate backward loop runs from
  k = t down to k = max(1, t-K+1).  ``truncate=None`` is full BPTT (the same as
  any K >= T).  The output layer (W_y, b_y) involves no recurrence and is never
  truncated.  (Beware: the WildML code itself loops over
  ``np.arange(max(0, t - bptt_truncate), t + 1)``, which visits K + 1 steps; the
  convention here keeps exactly K, as stated above.)
"""

import numpy as np

__all__ = ["reference_elman", "reference_gru", "reference_lstm"]

# Parameter shapes in terms of the sizes "x" (n_x), "h" (n_h) and "y" (n_y).
ELMAN_SHAPES = {
    "W_xh": ("h", "x"),
    "W_hh": ("h", "h"),
    "W_hy": ("y", "h"),
    "b_h": ("h",),
    "b_y": ("y",),
}
LSTM_SHAPES = {
    **{f"W_{gate}": ("h", "x") for gate in "fiog"},
    **{f"U_{gate}": ("h", "h") for gate in "fiog"},
    **{f"b_{gate}": ("h",) for gate in "fiog"},
    "W_y": ("y", "h"),
    "b_y": ("y",),
}
GRU_SHAPES = {
    **{f"W_{gate}": ("h", "x") for gate in "run"},
    **{f"U_{gate}": ("h", "h") for gate in "run"},
    **{f"b_{gate}": ("h",) for gate in "run"},
    "W_y": ("y", "h"),
    "b_y": ("y",),
}


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def _sigmoid(a):
    """Logistic sigmoid, computed without overflow for large |a|."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax_and_loss(y, label):
    """Stable softmax p of the column vector y, and -log p[label]."""
    shifted = y - np.max(y)
    log_sum = np.log(np.sum(np.exp(shifted)))
    p = np.exp(shifted - log_sum)
    return p, -(shifted[label, 0] - log_sum)


def _output_delta(p, label):
    """dJ_t/dy_t = p_t - onehot(label_t)."""
    dy = p.copy()
    dy[label, 0] -= 1.0
    return dy


def _first_kept_step(t, truncate):
    """Smallest k whose term is kept in the gradient of J_t (k > t - K, k >= 1)."""
    return 1 if truncate is None else max(1, t - truncate + 1)


def _check_truncate(truncate):
    if truncate is None:
        return None
    if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)) or truncate < 1:
        raise ValueError(f"truncate must be None or an int >= 1, got {truncate!r}")
    return int(truncate)


def _check_params(params, shapes):
    """Convert the parameters to float64 and check their shapes agree with each other.

    Returns (P, sizes) with P[name] a float64 array and sizes = {"x": n_x, "h": n_h, "y": n_y}.
    """
    missing = [name for name in shapes if name not in params]
    if missing:
        raise KeyError(f"missing parameters: {missing}")
    P = {name: np.asarray(params[name], dtype=np.float64) for name in shapes}
    sizes = {}
    for name, dims in shapes.items():
        if P[name].ndim != len(dims):
            raise ValueError(f"{name} must have {len(dims)} dimension(s), got shape {P[name].shape}")
        for dim, size in zip(dims, P[name].shape):
            if sizes.setdefault(dim, size) != size:
                raise ValueError(f"{name} has shape {P[name].shape}, inconsistent with n_{dim} = {sizes[dim]}")
    return P, sizes


def _initial_state(value, name, shape):
    """The given initial state as float64 of exactly `shape`, or zeros if None."""
    if value is None:
        return np.zeros(shape)
    value = np.asarray(value, dtype=np.float64)
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    return value


def _run(sequence_fn, shapes, state_names, params, xs, labels, states, truncate):
    """Check the inputs, then run `sequence_fn` on one sequence or on each sequence of a batch.

    sequence_fn(P, xs, labels, init, truncate) -> (loss, grads) for one sequence,
    with xs (T, n_x), labels (T,), init {state name: (n_h,)} and grads holding
    every parameter and every state name.
    """
    truncate = _check_truncate(truncate)
    P, sizes = _check_params(params, shapes)
    n_x, n_h, n_y = sizes["x"], sizes["h"], sizes["y"]
    xs = np.asarray(xs, dtype=np.float64)
    labels = np.asarray(labels)
    if xs.ndim not in (2, 3) or xs.shape[-1] != n_x:
        raise ValueError(f"xs must have shape (T, {n_x}) or (T, B, {n_x}), got {xs.shape}")
    if labels.shape != xs.shape[:-1]:
        raise ValueError(f"labels must have shape {xs.shape[:-1]}, got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_y):
        raise ValueError(f"labels must lie in [0, {n_y})")
    labels = labels.astype(np.int64)

    if xs.ndim == 2:
        init = {name: _initial_state(states[name], name, (n_h,)) for name in state_names}
        loss, grads = sequence_fn(P, xs, labels, init, truncate)
        return float(loss), grads

    # Batched: loop over the sequences, sum losses and weight gradients,
    # keep the initial-state gradients per sequence.
    B = xs.shape[1]
    init = {name: _initial_state(states[name], name, (B, n_h)) for name in state_names}
    total = 0.0
    grads = {name: np.zeros_like(P[name]) for name in shapes}
    for name in state_names:
        grads[name] = np.zeros((B, n_h))
    for b in range(B):
        init_b = {name: init[name][b] for name in state_names}
        loss_b, grads_b = sequence_fn(P, xs[:, b, :], labels[:, b], init_b, truncate)
        total += loss_b
        for name in shapes:
            grads[name] += grads_b[name]
        for name in state_names:
            grads[name][b] = grads_b[name]
    return float(total), grads


def _column(v):
    return v.reshape(-1, 1)


def _zero_grads(P):
    """Zero accumulators, with the biases as column vectors like everything else."""
    return {name: np.zeros((v.shape[0], 1)) if v.ndim == 1 else np.zeros_like(v) for name, v in P.items()}


def _finish(P, g):
    """Accumulated gradients back in the shapes of the parameters."""
    return {name: g[name].reshape(P[name].shape) for name in P}


# ----------------------------------------------------------------------------
# Elman RNN
# ----------------------------------------------------------------------------


def _elman_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W_xh, W_hh, W_hy = P["W_xh"], P["W_hh"], P["W_hy"]
    b_h, b_y = _column(P["b_h"]), _column(P["b_y"])

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, p = {}, {}, {}
    h[0] = _column(init["h0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = _column(xs[t - 1])
        z = W_xh @ x[t] + W_hh @ h[t - 1] + b_h
        h[t] = np.tanh(z)
        y = W_hy @ h[t] + b_y
        p[t], J_t = _softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    g = _zero_grads(P)
    dh0 = np.zeros_like(h[0])
    for t in range(1, T + 1):
        dy = _output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        g["W_hy"] += dy @ h[t].T
        g["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = _first_kept_step(t, truncate)
        dh = W_hy.T @ dy  # dJ_t/dh_t
        for k in range(t, k_min - 1, -1):
            dz = dh * (1.0 - h[k] ** 2)  # dJ_t/dz_k
            g["W_xh"] += dz @ x[k].T
            g["W_hh"] += dz @ h[k - 1].T
            g["b_h"] += dz
            dh = W_hh.T @ dz  # dJ_t/dh_{k-1}
        if k_min == 1:
            dh0 += dh  # the k = 1 term was kept: dh is dJ_t/dh_0

    grads = _finish(P, g)
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

    With ``b_h = b_y = 0`` this is the seed RNN of :mod:`derive.reference`.

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
    return _run(_elman_sequence, ELMAN_SHAPES, ("h0",), params, xs, labels, {"h0": h0}, truncate)


# ----------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------


def _lstm_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W = {gate: P[f"W_{gate}"] for gate in "fiog"}
    U = {gate: P[f"U_{gate}"] for gate in "fiog"}
    b = {gate: _column(P[f"b_{gate}"]) for gate in "fiog"}
    W_y, b_y = P["W_y"], _column(P["b_y"])

    def pre(gate, t):  # pre-activation of a gate at step t
        return W[gate] @ x[t] + U[gate] @ h[t - 1] + b[gate]

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, c, tc, p = {}, {}, {}, {}, {}
    f, i, o, g = {}, {}, {}, {}
    h[0] = _column(init["h0"])
    c[0] = _column(init["c0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = _column(xs[t - 1])
        f[t] = _sigmoid(pre("f", t))
        i[t] = _sigmoid(pre("i", t))
        o[t] = _sigmoid(pre("o", t))
        g[t] = np.tanh(pre("g", t))
        c[t] = f[t] * c[t - 1] + i[t] * g[t]
        tc[t] = np.tanh(c[t])
        h[t] = o[t] * tc[t]
        y = W_y @ h[t] + b_y
        p[t], J_t = _softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    grad = _zero_grads(P)
    dh0 = np.zeros_like(h[0])
    dc0 = np.zeros_like(c[0])
    for t in range(1, T + 1):
        dy = _output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        grad["W_y"] += dy @ h[t].T
        grad["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = _first_kept_step(t, truncate)
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

    grads = _finish(P, grad)
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
    return _run(_lstm_sequence, LSTM_SHAPES, ("h0", "c0"), params, xs, labels, {"h0": h0, "c0": c0}, truncate)


# ----------------------------------------------------------------------------
# GRU (Cho et al., 2014: reset applied to h_{t-1} before U_n)
# ----------------------------------------------------------------------------


def _gru_sequence(P, xs, labels, init, truncate):
    T = xs.shape[0]
    W = {gate: P[f"W_{gate}"] for gate in "run"}
    U = {gate: P[f"U_{gate}"] for gate in "run"}
    b = {gate: _column(P[f"b_{gate}"]) for gate in "run"}
    W_y, b_y = P["W_y"], _column(P["b_y"])

    # ---------------- forward pass (t = 1..T) ----------------
    x, h, p = {}, {}, {}
    r, u, n, rh = {}, {}, {}, {}
    h[0] = _column(init["h0"])
    loss = 0.0
    for t in range(1, T + 1):
        x[t] = _column(xs[t - 1])
        r[t] = _sigmoid(W["r"] @ x[t] + U["r"] @ h[t - 1] + b["r"])
        u[t] = _sigmoid(W["u"] @ x[t] + U["u"] @ h[t - 1] + b["u"])
        rh[t] = r[t] * h[t - 1]
        n[t] = np.tanh(W["n"] @ x[t] + U["n"] @ rh[t] + b["n"])
        h[t] = u[t] * h[t - 1] + (1.0 - u[t]) * n[t]
        y = W_y @ h[t] + b_y
        p[t], J_t = _softmax_and_loss(y, labels[t - 1])
        loss += J_t

    # ---------------- backward pass ----------------
    grad = _zero_grads(P)
    dh0 = np.zeros_like(h[0])
    for t in range(1, T + 1):
        dy = _output_delta(p[t], labels[t - 1])  # dJ_t/dy_t
        grad["W_y"] += dy @ h[t].T
        grad["b_y"] += dy

        # Propagate dJ_t back through time, from step t down to k_min.
        k_min = _first_kept_step(t, truncate)
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

    grads = _finish(P, grad)
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
    return _run(_gru_sequence, GRU_SHAPES, ("h0",), params, xs, labels, {"h0": h0}, truncate)
