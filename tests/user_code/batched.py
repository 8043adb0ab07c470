"""A loss function over a batch, as a model class's ``loss`` method often is: indices xs and
targets ys of shape (N, T), row vectors, weights (in, out), h0 (N, H), the loss averaged over N·T
as Deep Learning from Scratch's TimeSoftmaxWithLoss averages it.  ``Model.loss`` is right;
``Model.loss_sum_grads`` divides the loss by N·T but not its gradients."""

import numpy as np


class Model:
    def __init__(self, Wx, Wh, b, Wy, by):
        self.Wx, self.Wh, self.b, self.Wy, self.by = Wx, Wh, b, Wy, by

    def _run(self, xs, ys, h0):
        N, T = xs.shape
        V = self.Wx.shape[0]
        X = np.eye(V)[xs]  # (N, T, V)
        hs, ps, h = [], [], h0
        loss = 0.0
        for t in range(T):
            h = np.tanh(X[:, t] @ self.Wx + h @ self.Wh + self.b)
            a = h @ self.Wy + self.by
            p = np.exp(a - a.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            loss -= np.log(p[np.arange(N), ys[:, t]]).sum()
            hs.append(h)
            ps.append(p)
        grads = {k: np.zeros_like(v) for k, v in vars(self).items()}
        dnext = np.zeros_like(h0)
        for t in reversed(range(T)):
            da = ps[t].copy()
            da[np.arange(N), ys[:, t]] -= 1
            grads["Wy"] += hs[t].T @ da
            grads["by"] += da.sum(axis=0)
            dz = (1 - hs[t] ** 2) * (da @ self.Wy.T + dnext)
            prev = hs[t - 1] if t > 0 else h0
            grads["Wx"] += X[:, t].T @ dz
            grads["Wh"] += prev.T @ dz
            grads["b"] += dz.sum(axis=0)
            dnext = dz @ self.Wh.T
        return loss / (N * T), grads, N * T

    def loss(self, xs, ys, h0):
        loss, grads, n = self._run(xs, ys, h0)
        return loss, {k: g / n for k, g in grads.items()}

    def loss_sum_grads(self, xs, ys, h0):
        loss, grads, _ = self._run(xs, ys, h0)
        return loss, grads
