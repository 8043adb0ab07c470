"""Layers that run a whole sequence, in the style of layer-by-layer textbooks: each keeps what
its backward() needs from its forward().  The package common/ is imported from the folder that
holds it, so scripts run from there.  Written for bptt check's loader tests."""

# ruff: noqa: F403, F405 (the star import is the style these tests load)
from common.functions import sigmoid
from common.np import *


class TimeRNN:
    """h_t = tanh(x_t Wx + h_{t-1} Wh + b) over xs of shape (N, T, D)."""

    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]

    def forward(self, xs, h0):
        Wx, Wh, b = self.params
        self.xs, self.hs = xs, [h0]
        for t in range(xs.shape[1]):
            self.hs.append(np.tanh(xs[:, t] @ Wx + self.hs[-1] @ Wh + b))
        return np.stack(self.hs[1:], axis=1)

    def backward(self, dhs):
        Wx, Wh, b = self.params
        dWx, dWh, db = (np.zeros_like(p) for p in self.params)
        dh = np.zeros_like(self.hs[0])
        for t in reversed(range(dhs.shape[1])):
            dz = (dhs[:, t] + dh) * (1 - self.hs[t + 1] ** 2)
            dWx += self.xs[:, t].T @ dz
            dWh += self.hs[t].T @ dz
            db += dz.sum(axis=0)
            dh = dz @ Wh.T
        self.grads = [dWx, dWh, db]
        return dh


class TimeGate:
    """g_t = sigmoid(x_t W): a gate over a sequence, its gradient left to the caller."""

    def __init__(self, W):
        self.params = [W]

    def forward(self, xs):
        return sigmoid(xs @ self.params[0])
