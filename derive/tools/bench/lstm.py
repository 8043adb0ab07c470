"""The LSTM (the built-in ``lstm`` cell, with the output layer y = W_y h + b_y and summed
cross-entropy) written by hand as strongly as we can in NumPy, and the gate orders of the layouts.

The four gates are stacked: one (B, H) x (H, 4H) product per step forward and one (B, 4H) x (4H, H)
back.  The strong version orders them (o, i, f, g): the three sigmoid gates are one block (one
activation pass), and the three gates the cell delta scales (i, f, g) are another.  torch.nn.LSTM
stacks them (i, f, g, o), with two biases whose sum is our b.
"""

from __future__ import annotations

import numpy as np

from derive.tools.bench.flops import stacked_products
from derive.tools.bench.inplace import Kept, SoftmaxLoss, slope_
from derive.tools.bench.measure import Product
from derive.tools.bench.problem import Call, Layout, Problem, stack, unstack

GATES = 4


def _layout(order: str) -> Layout:
    return {
        "W": tuple(f"W_{g}" for g in order),
        "U": tuple(f"U_{g}" for g in order),
        "b": tuple(f"b_{g}" for g in order),
        "W_y": ("W_y",),
        "b_y": ("b_y",),
    }


STRONG_LAYOUT = _layout("oifg")
TORCH_LAYOUT = _layout("ifgo")  # torch.nn.LSTM's weight_ih_l0, weight_hh_l0, bias_ih_l0 rows (and JAX's here)


def products(V: int, H: int, T: int, B: int) -> list[Product]:
    return stacked_products(V, H, T, B, gates=GATES)


class _LSTMSpace:
    """The work arrays of one (T, B, V, H, dtype), and their per-step views; gates in (o, i, f, g) order."""

    def __init__(self, T: int, B: int, V: int, H: int, dtype: np.dtype) -> None:
        N = T * B
        self.a = np.empty((T, B, 4 * H), dtype)  # pre-activations; then the gates o, i, f, g
        self.d = np.empty((T, B, 4 * H), dtype)  # the gates' local factors; then dJ/d(pre-activation)
        self.c = np.empty((T + 1, B, H), dtype)  # c[0] = c0
        self.h = np.empty((T + 1, B, H), dtype)  # h[0] = h0
        self.tc = np.empty((T, B, H), dtype)  # tanh(c_t)
        self.k = np.empty((T, B, H), dtype)  # dc_t/dh_t's factor: o (1 - tanh(c_t)^2)
        self.dh = np.empty((T, B, H), dtype)  # dJ/dh_t
        self.a_rows, self.d_rows = self.a.reshape(N, -1), self.d.reshape(N, -1)
        self.h_rows, self.h_prev_rows = self.h[1:].reshape(N, H), self.h[:-1].reshape(N, H)
        self.dh_rows, self.tc_rows, self.k_rows = self.dh.reshape(N, H), self.tc.reshape(N, H), self.k.reshape(N, H)
        self.c_prev_rows = self.c[:-1].reshape(N, H)
        a4, d4 = self.a.reshape(T, B, 4, H), self.d.reshape(T, B, 4, H)
        self.o, self.i, self.f, self.g = (a4[:, :, j] for j in range(4))  # (T, B, H) views
        self.forward = list(
            zip(
                self.h[:-1],
                self.h[1:],
                self.c[:-1],
                self.c[1:],
                self.a,
                self.a[:, :, : 3 * H],
                self.o,
                self.i,
                self.f,
                self.g,
                self.tc,
            )
        )
        self.backward = list(zip(self.dh, self.k, self.d, d4[:, :, 0], d4[:, :, 1:], self.f))[::-1]
        self.za, self.ig = np.empty((B, 4 * H), dtype), np.empty((B, H), dtype)
        self.dh_next, self.dc, self.dc_next = np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
        self.dc_b = self.dc[:, None, :]
        self.out = SoftmaxLoss(N, V, dtype)

    def local_factors(self) -> None:
        """d <- what dJ/dc_t (for i, f, g) or dJ/dh_t (for o) is multiplied by to reach each gate's pre-activation."""
        H = self.h.shape[2]
        o, i, f, g = (self.a_rows[:, j * H : (j + 1) * H] for j in range(4))
        do, di, df, dg = (self.d_rows[:, j * H : (j + 1) * H] for j in range(4))
        slope_(do, o)
        np.multiply(do, self.tc_rows, out=do)  # o (1 - o) tanh(c_t)
        slope_(di, i)
        np.multiply(di, g, out=di)  # i (1 - i) g
        slope_(df, f)
        np.multiply(df, self.c_prev_rows, out=df)  # f (1 - f) c_{t-1}
        np.multiply(g, g, out=dg)
        np.subtract(1, dg, out=dg)
        np.multiply(dg, i, out=dg)  # (1 - g^2) i
        np.multiply(self.tc_rows, self.tc_rows, out=self.k_rows)
        np.subtract(1, self.k_rows, out=self.k_rows)
        np.multiply(self.k_rows, o, out=self.k_rows)  # o (1 - tanh(c_t)^2)


class StrongLSTM:
    """The LSTM's BPTT on stacked gates (o, i, f, g), every work array kept and written in place."""

    def __init__(self) -> None:
        self.kept = Kept(_LSTMSpace)

    def __call__(self, P, xs, labels, h0, c0):
        T, B, V = xs.shape
        x_rows = xs.reshape(T * B, V)
        s = self.kept.get(T, B, V, P["U"].shape[1], xs.dtype)
        np.dot(x_rows, P["W"].T, out=s.a_rows)  # W x_t + b, every step
        np.add(s.a_rows, P["b"], out=s.a_rows)
        np.copyto(s.h[0], h0)
        np.copyto(s.c[0], c0)
        self._forward(s, P["U"].T)
        np.dot(s.h_rows, P["W_y"].T, out=s.out.y)
        np.add(s.out.y, P["b_y"], out=s.out.y)
        loss = s.out(labels.reshape(-1))  # s.out.y is now dJ/dy
        dy = s.out.y
        np.dot(dy, P["W_y"], out=s.dh_rows)  # dJ/dh_t from y_t
        s.local_factors()
        self._backward(s, P["U"])
        grads = {
            "W": np.dot(s.d_rows.T, x_rows),
            "U": np.dot(s.d_rows.T, s.h_prev_rows),
            "b": s.d_rows.sum(axis=0),
            "W_y": np.dot(dy.T, s.h_rows),
            "b_y": dy.sum(axis=0),
        }
        return loss, grads, s.dh_next.copy(), s.dc_next.copy()

    @staticmethod
    def _forward(s: _LSTMSpace, U_T: np.ndarray) -> None:
        za, ig = s.za, s.ig
        for h_prev, h, c_prev, c, a, sig, o, i, f, g, tc in s.forward:
            np.dot(h_prev, U_T, out=za)
            np.add(a, za, out=a)
            np.multiply(sig, 0.5, out=sig)  # sigmoid(x) = 0.5 tanh(x / 2) + 0.5: one tanh for all four gates
            np.tanh(a, out=a)
            np.multiply(sig, 0.5, out=sig)
            np.add(sig, 0.5, out=sig)
            np.multiply(f, c_prev, out=c)  # c_t = f c_{t-1} + i g
            np.multiply(i, g, out=ig)
            np.add(c, ig, out=c)
            np.tanh(c, out=tc)
            np.multiply(o, tc, out=h)  # h_t = o tanh(c_t)

    @staticmethod
    def _backward(s: _LSTMSpace, U: np.ndarray) -> None:
        dh_next, dc, dc_next = s.dh_next, s.dc, s.dc_next
        dh_next.fill(0)
        dc_next.fill(0)
        for dh, k, d, d_o, d_ifg, f in s.backward:
            np.add(dh, dh_next, out=dh)  # dJ/dh_t
            np.multiply(dh, k, out=dc)
            np.add(dc, dc_next, out=dc)  # dJ/dc_t
            np.multiply(d_ifg, s.dc_b, out=d_ifg)
            np.multiply(d_o, dh, out=d_o)
            np.multiply(dc, f, out=dc_next)  # dJ/dc_{t-1}'s share
            np.dot(d, U, out=dh_next)  # dJ/dh_{t-1}'s share: U^T dJ/d(pre-activations)


def strong_numpy(p: Problem) -> Call:
    strong, P = StrongLSTM(), stack(p.params, STRONG_LAYOUT)

    def call():
        loss, grads, dh0, dc0 = strong(P, p.xs, p.labels, p.initial["h0"], p.initial["c0"])
        out = unstack(grads, STRONG_LAYOUT)
        out["h0"], out["c0"] = dh0, dc0
        return loss, out

    return call
