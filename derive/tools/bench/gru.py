"""Two GRUs, each written by hand as strongly as we can in NumPy, with its layouts and products:

- ``cho``: the built-in ``gru`` cell (Cho et al., 2014): n = tanh(W_n x + U_n (r h[t-1]) + b_n),
  h = u h[t-1] + (1 - u) n.  The reset gate acts before U_n, so a step makes two products forward,
  (B, H) x (H, 2H) for r and u, then (B, H) x (H, H) for n, and two back.
- ``torch``: the bench's cell ``gru_torch.cell``, torch.nn.GRU's formula:
  n = tanh(W_n x + b_in + r (U_n h[t-1] + b_hn)), h = (1 - z) n + z h[t-1].  The reset gate acts
  after U_n, so one stacked (B, H) x (H, 3H) product per step forward and one back.

Both stack their gates in torch's order (r, z or u, n): the sigmoid gates form one block.
Products use np.dot (less to dispatch than np.matmul, 0.4 us a call) but where an operand is a
strided block of the stacked gates: np.dot would copy it, np.matmul hands its stride to BLAS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from derive.ir.cell import Cell
from derive.spec.parser import read
from derive.tools.bench.flops import stacked_products
from derive.tools.bench.inplace import Kept, SoftmaxLoss, sigmoid_, slope_
from derive.tools.bench.measure import Product
from derive.tools.bench.problem import Call, Problem, stack, unstack

GATES = 3
TORCH_CELL = Path(__file__).with_name("gru_torch.cell")

CHO_LAYOUT = {
    "W": ("W_r", "W_u", "W_n"),
    "U_ru": ("U_r", "U_u"),
    "U_n": ("U_n",),
    "b": ("b_r", "b_u", "b_n"),
    "W_y": ("W_y",),
    "b_y": ("b_y",),
}
# torch.nn.GRU's rows: weight_ih_l0 = W, weight_hh_l0 = U, bias_ih_l0 = b_x, bias_hh_l0 = (0, 0, b_hn)
TORCH_LAYOUT = {
    "W": ("W_r", "W_z", "W_n"),
    "U": ("U_r", "U_z", "U_n"),
    "b_x": ("b_r", "b_z", "b_in"),
    "b_hn": ("b_hn",),
    "W_y": ("W_y",),
    "b_y": ("b_y",),
}


def torch_cell() -> Cell:
    return read(TORCH_CELL)


def torch_products(V: int, H: int, T: int, B: int) -> list[Product]:
    return stacked_products(V, H, T, B, gates=GATES)


def cho_products(V: int, H: int, T: int, B: int) -> list[Product]:
    """As ``stacked_products`` with G = 3, but r h[t-1] enters U_n after r is known: U splits in two."""
    N = T * B
    return [
        Product("x W^T: the input projection, every step", N, V, 3 * H, 1, "NT"),
        Product("h[t-1] U_ru^T: r and u, per step", B, H, 2 * H, T, "NT"),
        Product("(r h[t-1]) U_n^T: n, per step", B, H, H, T, "NT"),
        Product("h W_y^T: the outputs, every step", N, H, V, 1, "NT"),
        Product("dy W_y: dJ/dh from the outputs", N, V, H, 1, "NN"),
        Product("dn U_n: dJ/d(r h[t-1]), per step", B, H, H, T, "NN"),
        Product("d_ru U_ru: dJ/dh[t-1], per step", B, 2 * H, H, T, "NN"),
        Product("dy^T h: dW_y", V, N, H, 1, "TN"),
        Product("dA^T x: dW", 3 * H, N, V, 1, "TN"),
        Product("d_ru^T h[t-1]: dU_r, dU_u", 2 * H, N, H, 1, "TN"),
        Product("dn^T (r h[t-1]): dU_n", H, N, H, 1, "TN"),
    ]


class _GRUSpace:
    """The work arrays of one (T, B, V, H, dtype) of either GRU; gates in (r, z, n) order (u for z in Cho's)."""

    def __init__(self, T: int, B: int, V: int, H: int, dtype: np.dtype) -> None:
        N = T * B
        self.a = np.empty((T, B, 3 * H), dtype)  # pre-activations; then r, z (or u), n
        self.d = np.empty((T, B, 3 * H), dtype)  # local factors; then the deltas the recurrent products read
        self.m = np.empty((T, B, H), dtype)  # cho: r h[t-1]; torch: U_n h[t-1] + b_hn
        self.dn = np.empty((T, B, H), dtype)  # torch: dJ/d(n's pre-activation); cho: scratch
        self.h = np.empty((T + 1, B, H), dtype)  # h[0] = h0
        self.dh = np.empty((T, B, H), dtype)  # dJ/dh_t
        self.a_rows, self.d_rows, self.m_rows = self.a.reshape(N, -1), self.d.reshape(N, -1), self.m.reshape(N, H)
        self.dn_rows, self.dh_rows = self.dn.reshape(N, H), self.dh.reshape(N, H)
        self.h_rows, self.h_prev_rows = self.h[1:].reshape(N, H), self.h[:-1].reshape(N, H)
        self.gate_rows = [self.a_rows[:, j * H : (j + 1) * H] for j in range(3)]  # r, z, n as (T B, H)
        self.delta_rows = [self.d_rows[:, j * H : (j + 1) * H] for j in range(3)]
        self.r, self.z, self.n = (self.a[:, :, j * H : (j + 1) * H] for j in range(3))
        self.dr, self.dz, self.dn_slot = (self.d[:, :, j * H : (j + 1) * H] for j in range(3))  # n's: torch's dJ/dm
        self.rz = self.a[:, :, : 2 * H]
        self.zr = np.empty((B, 3 * H), dtype)  # a step's recurrent products
        self.tmp, self.dh_next, self.dmh = np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
        self.out = SoftmaxLoss(N, V, dtype)
        self.forward = list(zip(self.h[:-1], self.h[1:], self.rz, self.r, self.z, self.n, self.m))

    def output_layer(self, W_y: np.ndarray, b_y: np.ndarray, labels: np.ndarray) -> float:
        """y = W_y h + b_y, the loss, and dJ/dh_t from the outputs into dh."""
        np.dot(self.h_rows, W_y.T, out=self.out.y)
        np.add(self.out.y, b_y, out=self.out.y)
        loss = self.out(labels.reshape(-1))
        np.dot(self.out.y, W_y, out=self.dh_rows)
        return loss

    def output_grads(self) -> dict[str, np.ndarray]:
        dy = self.out.y
        return {"W_y": np.dot(dy.T, self.h_rows), "b_y": dy.sum(axis=0)}


def _update(h_prev: np.ndarray, h: np.ndarray, z: np.ndarray, n: np.ndarray) -> None:
    """h = z h[t-1] + (1 - z) n, as n + z (h[t-1] - n)."""
    np.subtract(h_prev, n, out=h)
    np.multiply(h, z, out=h)
    np.add(h, n, out=h)


class _ChoSpace(_GRUSpace):
    def __init__(self, T: int, B: int, V: int, H: int, dtype: np.dtype) -> None:
        super().__init__(T, B, V, H, dtype)
        self.z_ru, self.z_n = np.empty((B, 2 * H), dtype), np.empty((B, H), dtype)
        dh3, d3 = self.dh[:, :, None, :], self.d.reshape(T, B, 3, H)
        steps = zip(self.dh, dh3, self.d[:, :, : 2 * H], d3[:, :, 1:], self.dr, self.dn_slot, self.z, self.r)
        self.backward = list(steps)[::-1]

    def local_factors(self) -> None:
        """d <- (h[t-1] r (1 - r), (h[t-1] - n) u (1 - u), (1 - u)(1 - n^2)): what reaches the pre-activations."""
        (r, u, n), (dr, du, dn), scratch = self.gate_rows, self.delta_rows, self.dn_rows
        slope_(dr, r)
        np.multiply(dr, self.h_prev_rows, out=dr)
        slope_(du, u)
        np.subtract(self.h_prev_rows, n, out=scratch)
        np.multiply(du, scratch, out=du)
        np.multiply(n, n, out=dn)
        np.subtract(1, dn, out=dn)
        np.subtract(1, u, out=scratch)
        np.multiply(dn, scratch, out=dn)


class StrongChoGRU:
    """Cho et al.'s GRU by BPTT, W and b stacked (r, u, n), U as U_ru = (U_r; U_u) and U_n."""

    def __init__(self) -> None:
        self.kept = Kept(_ChoSpace)

    def __call__(self, P, xs, labels, h0):
        T, B, V = xs.shape
        x_rows = xs.reshape(T * B, V)
        s = self.kept.get(T, B, V, P["U_n"].shape[0], xs.dtype)
        np.dot(x_rows, P["W"].T, out=s.a_rows)  # W x_t + b, every step
        np.add(s.a_rows, P["b"], out=s.a_rows)
        np.copyto(s.h[0], h0)
        U_ru_T, U_n_T, z_ru, z_n = P["U_ru"].T, P["U_n"].T, s.z_ru, s.z_n
        for h_prev, h, ru, r, u, n, m in s.forward:
            np.dot(h_prev, U_ru_T, out=z_ru)
            np.add(ru, z_ru, out=ru)
            sigmoid_(ru)  # r, u
            np.multiply(r, h_prev, out=m)
            np.dot(m, U_n_T, out=z_n)
            np.add(n, z_n, out=n)
            np.tanh(n, out=n)  # n = tanh(W_n x + U_n (r h[t-1]) + b_n)
            _update(h_prev, h, u, n)
        loss = s.output_layer(P["W_y"], P["b_y"], labels)
        s.local_factors()
        self._backward(s, P["U_ru"], P["U_n"])
        H = P["U_n"].shape[0]
        grads = {
            "W": np.dot(s.d_rows.T, x_rows),
            "U_ru": np.matmul(s.d_rows[:, : 2 * H].T, s.h_prev_rows),
            "U_n": np.matmul(s.d_rows[:, 2 * H :].T, s.m_rows),
            "b": s.d_rows.sum(axis=0),
        }
        return loss, grads | s.output_grads(), s.dh_next.copy()

    @staticmethod
    def _backward(s: _ChoSpace, U_ru: np.ndarray, U_n: np.ndarray) -> None:
        dh_next, tmp, dm = s.dh_next, s.tmp, s.dmh
        dh_next.fill(0)
        for dh, dh3, d_ru, d_un, d_r, d_n, u, r in s.backward:
            np.add(dh, dh_next, out=dh)  # dJ/dh_t
            np.multiply(d_un, dh3, out=d_un)  # dJ/d(pre-activations) of u and n
            np.matmul(d_n, U_n, out=dm)  # dJ/d(r h[t-1])
            np.multiply(d_r, dm, out=d_r)
            np.matmul(d_ru, U_ru, out=dh_next)  # dJ/dh[t-1]: through r and u, ...
            np.multiply(dh, u, out=tmp)
            np.add(dh_next, tmp, out=dh_next)  # ... directly, ...
            np.multiply(dm, r, out=tmp)
            np.add(dh_next, tmp, out=dh_next)  # ... and through r h[t-1]


def strong_cho(p: Problem) -> Call:
    strong, P = StrongChoGRU(), stack(p.params, CHO_LAYOUT)

    def call():
        loss, grads, dh0 = strong(P, p.xs, p.labels, p.initial["h0"])
        return loss, unstack(grads, CHO_LAYOUT) | {"h0": dh0}

    return call


class _TorchSpace(_GRUSpace):
    def __init__(self, T: int, B: int, V: int, H: int, dtype: np.dtype) -> None:
        super().__init__(T, B, V, H, dtype)
        self.zr_rz, self.zr_n = self.zr[:, : 2 * H], self.zr[:, 2 * H :]
        steps = zip(self.dh, self.d, self.dr, self.dz, self.dn_slot, self.dn, self.z, self.r)
        self.backward = list(steps)[::-1]

    def local_factors(self) -> None:
        """d <- (m r (1 - r), (h[t-1] - n) z (1 - z), -), dn <- (1 - z)(1 - n^2)."""
        (r, z, n), (dr, dz, _) = self.gate_rows, self.delta_rows
        slope_(dr, r)
        np.multiply(dr, self.m_rows, out=dr)
        slope_(dz, z)
        np.subtract(self.h_prev_rows, n, out=self.dn_rows)
        np.multiply(dz, self.dn_rows, out=dz)
        np.multiply(n, n, out=self.dn_rows)
        np.subtract(1, self.dn_rows, out=self.dn_rows)
        np.subtract(1, z, out=self.m_rows)  # m is read no more
        np.multiply(self.dn_rows, self.m_rows, out=self.dn_rows)


class StrongTorchGRU:
    """torch.nn.GRU's formula by BPTT, gates stacked (r, z, n) as torch stacks them."""

    def __init__(self) -> None:
        self.kept = Kept(_TorchSpace)

    def __call__(self, P, xs, labels, h0):
        T, B, V = xs.shape
        x_rows = xs.reshape(T * B, V)
        H = P["U"].shape[1]
        s = self.kept.get(T, B, V, H, xs.dtype)
        np.dot(x_rows, P["W"].T, out=s.a_rows)  # W x_t + b_x, every step
        np.add(s.a_rows, P["b_x"], out=s.a_rows)
        np.copyto(s.h[0], h0)
        self._forward(s, P["U"].T, P["b_hn"])
        loss = s.output_layer(P["W_y"], P["b_y"], labels)
        s.local_factors()
        self._backward(s, P["U"])
        d_rz = s.d_rows[:, : 2 * H]
        W, b_x = np.empty((3 * H, V), xs.dtype), np.empty(3 * H, xs.dtype)
        np.matmul(d_rz.T, x_rows, out=W[: 2 * H])
        np.dot(s.dn_rows.T, x_rows, out=W[2 * H :])
        np.sum(d_rz, axis=0, out=b_x[: 2 * H])
        np.sum(s.dn_rows, axis=0, out=b_x[2 * H :])
        grads = {
            "W": W,
            "U": np.dot(s.d_rows.T, s.h_prev_rows),
            "b_x": b_x,
            "b_hn": s.d_rows[:, 2 * H :].sum(axis=0),
        }
        return loss, grads | s.output_grads(), s.dh_next.copy()

    @staticmethod
    def _forward(s: _TorchSpace, U_T: np.ndarray, b_hn: np.ndarray) -> None:
        zr, zr_rz, zr_n, tmp = s.zr, s.zr_rz, s.zr_n, s.tmp
        for h_prev, h, rz, r, z, n, m in s.forward:
            np.dot(h_prev, U_T, out=zr)
            np.add(rz, zr_rz, out=rz)
            sigmoid_(rz)  # r, z
            np.add(zr_n, b_hn, out=m)  # m = U_n h[t-1] + b_hn
            np.multiply(r, m, out=tmp)
            np.add(n, tmp, out=n)
            np.tanh(n, out=n)  # n = tanh(W_n x + b_in + r m)
            _update(h_prev, h, z, n)

    @staticmethod
    def _backward(s: _TorchSpace, U: np.ndarray) -> None:
        dh_next, tmp = s.dh_next, s.tmp
        dh_next.fill(0)
        for dh, d, d_r, d_z, d_m, dn, z, r in s.backward:
            np.add(dh, dh_next, out=dh)  # dJ/dh_t
            np.multiply(dn, dh, out=dn)  # dJ/d(n's pre-activation)
            np.multiply(d_r, dn, out=d_r)
            np.multiply(d_z, dh, out=d_z)
            np.multiply(dn, r, out=d_m)  # dJ/dm
            np.dot(d, U, out=dh_next)  # dJ/dh[t-1]: through r, z and m, ...
            np.multiply(dh, z, out=tmp)
            np.add(dh_next, tmp, out=dh_next)  # ... and directly


def strong_torch_gru(p: Problem) -> Call:
    strong, P = StrongTorchGRU(), stack(p.params, TORCH_LAYOUT)

    def call():
        loss, grads, dh0 = strong(P, p.xs, p.labels, p.initial["h0"])
        return loss, unstack(grads, TORCH_LAYOUT) | {"h0": dh0}

    return call
