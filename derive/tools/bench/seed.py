"""The seed RNN (h = tanh(W_xh x + W_hh h[t-1]), y = W_hy h, softmax cross-entropy at every step, no
biases) written by hand three ways, independently of the generator:

- ``min_char_rnn``: Karpathy's min-char-rnn loop (one sequence at a time, column vectors);
- ``allocating_numpy``: everything but the two recurrences hoisted out of the loops, in plain NumPy
  expressions (each allocates its result): the expert version of the first benchmark;
- ``StrongSeed``: the strongest we can write (see ``inplace``): no allocation in a call but its
  returned gradients.
"""

from __future__ import annotations

import numpy as np

from derive.tools.bench.flops import stacked_products
from derive.tools.bench.inplace import Kept, SoftmaxLoss
from derive.tools.bench.measure import Product
from derive.tools.bench.problem import Call, Layout, Problem

LAYOUT: Layout = {"W_xh": ("W_xh",), "W_hh": ("W_hh",), "W_hy": ("W_hy",)}  # nothing to stack


def products(V: int, H: int, T: int, B: int) -> list[Product]:
    return stacked_products(V, H, T, B, gates=1)


def min_char_rnn(params, xs, labels, h0):
    """min-char-rnn's lossFun, for each sequence of the batch: forward over t keeping every state,
    then one backward pass over t carrying dh_next, column vectors throughout."""
    W_xh, W_hh, W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
    T, B, V = xs.shape
    loss = 0.0
    dW_xh, dW_hh, dW_hy = np.zeros_like(W_xh), np.zeros_like(W_hh), np.zeros_like(W_hy)
    dh0 = np.zeros_like(h0)
    for b in range(B):
        hs, ps = {-1: h0[b].reshape(-1, 1)}, {}
        for t in range(T):
            x = xs[t, b].reshape(-1, 1)
            hs[t] = np.tanh(W_xh @ x + W_hh @ hs[t - 1])
            y = W_hy @ hs[t]
            e = np.exp(y - np.max(y))
            ps[t] = e / np.sum(e)
            loss += -np.log(ps[t][labels[t, b], 0])
        dh_next = np.zeros_like(hs[0])
        for t in reversed(range(T)):
            dy = np.copy(ps[t])
            dy[labels[t, b]] -= 1
            dW_hy += dy @ hs[t].T
            dh = W_hy.T @ dy + dh_next
            dz = (1 - hs[t] * hs[t]) * dh
            dW_xh += dz @ xs[t, b].reshape(1, -1)
            dW_hh += dz @ hs[t - 1].T
            dh_next = W_hh.T @ dz
        dh0[b] = dh_next[:, 0]
    return float(loss), {"W_xh": dW_xh, "W_hh": dW_hh, "W_hy": dW_hy, "h0": dh0}


def allocating_numpy(params, xs, labels, h0):
    """The input projection, the output layer, the softmax, the loss and the three weight gradients
    each one product over all steps; only the recurrences h_t and delta_t loop over t."""
    W_xh, W_hh, W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
    T, B, V = xs.shape
    H = W_hh.shape[0]
    h = np.empty((T + 1, B, H), xs.dtype)
    h[0] = h0
    zx = (xs.reshape(T * B, V) @ W_xh.T).reshape(T, B, H)
    for t in range(T):
        h[t + 1] = np.tanh(zx[t] + h[t] @ W_hh.T)
    hs = h[1:].reshape(T * B, H)
    y = hs @ W_hy.T
    y -= y.max(axis=1, keepdims=True)
    e = np.exp(y)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(T * B)
    flat = labels.reshape(T * B)
    loss = float(np.sum(np.log(s[:, 0]) - y[rows, flat]))
    dy = e / s
    dy[rows, flat] -= 1.0
    dh = (dy @ W_hy).reshape(T, B, H)
    dz = np.empty((T, B, H), xs.dtype)
    carry = np.zeros((B, H), xs.dtype)
    for t in range(T - 1, -1, -1):
        dz[t] = (1.0 - h[t + 1] ** 2) * (dh[t] + carry)
        carry = dz[t] @ W_hh
    dzs = dz.reshape(T * B, H)
    grads = {
        "W_xh": dzs.T @ xs.reshape(T * B, V),
        "W_hh": dzs.T @ h[:-1].reshape(T * B, H),
        "W_hy": dy.T @ hs,
        "h0": carry,
    }
    return loss, grads


class _SeedSpace:
    """The work arrays of one (T, B, V, H, dtype), and their per-step views."""

    def __init__(self, T: int, B: int, V: int, H: int, dtype: np.dtype) -> None:
        self.h = np.empty((T + 1, B, H), dtype)  # h[0] = h0; h[t] = tanh(z_t)
        self.h_rows, self.h_prev_rows = self.h[1:].reshape(T * B, H), self.h[:-1].reshape(T * B, H)
        self.forward = list(zip(self.h[:-1], self.h[1:]))  # (h[t-1], h[t])
        self.dz = np.empty((T, B, H), dtype)  # dJ/dh_t from the outputs; then dJ/dz_t
        self.slope = np.empty((T, B, H), dtype)  # 1 - h_t^2
        self.dz_rows, self.slope_rows = self.dz.reshape(T * B, H), self.slope.reshape(T * B, H)
        self.backward = list(zip(self.dz[1:], self.dz[:-1], self.slope[:-1]))[::-1]  # (dz_t+1, dz_t, slope_t)
        self.zh = np.empty((B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.out = SoftmaxLoss(T * B, V, dtype)


class StrongSeed:
    """The seed model's BPTT with every work array kept between calls and written in place."""

    def __init__(self) -> None:
        self.kept = Kept(_SeedSpace)

    def __call__(self, params, xs, labels, h0):
        W_xh, W_hh, W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
        T, B, V = xs.shape
        x_rows = xs.reshape(T * B, V)
        s = self.kept.get(T, B, V, W_hh.shape[0], xs.dtype)
        np.dot(x_rows, W_xh.T, out=s.h_rows)  # W_xh x_t, every step
        np.copyto(s.h[0], h0)
        W_hh_T, zh = W_hh.T, s.zh
        for h_prev, h in s.forward:  # h_t = tanh(W_xh x_t + W_hh h_{t-1})
            np.dot(h_prev, W_hh_T, out=zh)
            np.add(h, zh, out=h)
            np.tanh(h, out=h)
        np.dot(s.h_rows, W_hy.T, out=s.out.y)
        loss = s.out(labels.reshape(-1))  # s.out.y is now dJ/dy
        dy = s.out.y
        np.dot(dy, W_hy, out=s.dz_rows)  # dJ/dh_t from y_t
        np.multiply(s.h_rows, s.h_rows, out=s.slope_rows)
        np.subtract(1, s.slope_rows, out=s.slope_rows)
        np.multiply(s.dz[-1], s.slope[-1], out=s.dz[-1])
        carry = s.carry
        for dz_next, dz, slope in s.backward:  # dJ/dz_t = (1 - h_t^2) (dJ/dh_t + W_hh^T dJ/dz_t+1)
            np.dot(dz_next, W_hh, out=carry)
            np.add(dz, carry, out=dz)
            np.multiply(dz, slope, out=dz)
        grads = {
            "W_xh": np.dot(s.dz_rows.T, x_rows),
            "W_hh": np.dot(s.dz_rows.T, s.h_prev_rows),
            "W_hy": np.dot(dy.T, s.h_rows),
            "h0": np.dot(s.dz[0], W_hh),
        }
        return loss, grads


def strong_numpy(p: Problem) -> Call:
    strong = StrongSeed()
    return lambda: strong(p.params, p.xs, p.labels, **p.initial)
