"""What the hand-written reference loops for the Elman RNN, the LSTM and the GRU share: their
conventions, the batching harness, the softmax output layer and the parameter checks.

Like :mod:`derive.verify.oracles.rnn` (the seed RNN's yardstick), this module is written
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
  ``bptt_truncate`` as used by :mod:`derive.verify.oracles.rnn`: for each loss term J_t
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

# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def sigmoid(a):
    """Logistic sigmoid, computed without overflow for large |a|."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax_and_loss(y, label):
    """Stable softmax p of the column vector y, and -log p[label]."""
    shifted = y - np.max(y)
    log_sum = np.log(np.sum(np.exp(shifted)))
    p = np.exp(shifted - log_sum)
    return p, -(shifted[label, 0] - log_sum)


def output_delta(p, label):
    """dJ_t/dy_t = p_t - onehot(label_t)."""
    dy = p.copy()
    dy[label, 0] -= 1.0
    return dy


def first_kept_step(t, truncate):
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


def run_batched(sequence_fn, shapes, state_names, params, xs, labels, states, truncate):
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


def column(v):
    return v.reshape(-1, 1)


def zero_grads(P):
    """Zero accumulators, with the biases as column vectors like everything else."""
    return {name: np.zeros((v.shape[0], 1)) if v.ndim == 1 else np.zeros_like(v) for name, v in P.items()}


def finish(P, g):
    """Accumulated gradients back in the shapes of the parameters."""
    return {name: g[name].reshape(P[name].shape) for name in P}
