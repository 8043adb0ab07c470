"""Layer objects that keep their gradients on themselves, time first: an Elman layer and a GRU layer
(Cho et al.'s, the built-in gru's recurrent part) with its three gates packed z, r, n into one
(3H, D) and one (3H, H) matrix, weights stored (out, in).  Written for bptt check's tests, in the
style of small NumPy deep-learning libraries: ``forward(X)`` takes (T, N, D) and starts from zero,
``backward(dH)`` leaves ``dW``-style attributes and returns dX."""

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


class ElmanLayer:
    def __init__(self, input_dim, hidden_dim):
        rng = np.random.default_rng(0)
        self.W_in = rng.standard_normal((hidden_dim, input_dim)) * 0.1
        self.W_rec = rng.standard_normal((hidden_dim, hidden_dim)) * 0.1
        self.bias = np.zeros(hidden_dim)

    def forward(self, X):
        T, N, _ = X.shape
        self.X, self.H = X, np.zeros((T + 1, N, self.W_rec.shape[0]))
        for t in range(T):
            self.H[t + 1] = np.tanh(X[t] @ self.W_in.T + self.H[t] @ self.W_rec.T + self.bias)
        return self.H[1:]

    def backward(self, dH):
        self.dW_in, self.dW_rec = np.zeros_like(self.W_in), np.zeros_like(self.W_rec)
        self.dbias, dX = np.zeros_like(self.bias), np.zeros_like(self.X)
        carry = np.zeros_like(self.H[0])
        for t in reversed(range(len(dH))):
            dz = (1 - self.H[t + 1] ** 2) * (dH[t] + carry)
            self.dW_in += dz.T @ self.X[t]
            self.dW_rec += dz.T @ self.H[t]
            self.dbias += dz.sum(axis=0)
            dX[t] = dz @ self.W_in
            carry = dz @ self.W_rec
        return dX


class GRULayer:
    """z (update), r (reset), n (new) packed in that order: h = z * h_prev + (1 - z) * n."""

    def __init__(self, input_dim, hidden_dim):
        rng = np.random.default_rng(0)
        self.Wx = rng.standard_normal((3 * hidden_dim, input_dim)) * 0.1
        self.Wh = rng.standard_normal((3 * hidden_dim, hidden_dim)) * 0.1
        self.b = np.zeros(3 * hidden_dim)

    def forward(self, X):
        T, N, _ = X.shape
        H = self.Wh.shape[1]
        self.X, self.Hs, self.cache = X, np.zeros((T + 1, N, H)), []
        for t in range(T):
            h = self.Hs[t]
            ax = X[t] @ self.Wx.T + self.b
            z = sigmoid(ax[:, :H] + h @ self.Wh[:H].T)
            r = sigmoid(ax[:, H : 2 * H] + h @ self.Wh[H : 2 * H].T)
            n = np.tanh(ax[:, 2 * H :] + (r * h) @ self.Wh[2 * H :].T)
            self.Hs[t + 1] = z * h + (1 - z) * n
            self.cache.append((z, r, n))
        return self.Hs[1:]

    def backward(self, dHs):
        H = self.Wh.shape[1]
        self.dWx, self.dWh, self.db = np.zeros_like(self.Wx), np.zeros_like(self.Wh), np.zeros_like(self.b)
        dX, carry = np.zeros_like(self.X), np.zeros_like(self.Hs[0])
        for t in reversed(range(len(dHs))):
            h, (z, r, n) = self.Hs[t], self.cache[t]
            dh = dHs[t] + carry
            dn = dh * (1 - z) * (1 - n**2)
            dz = dh * (h - n) * z * (1 - z)
            drh = dn @ self.Wh[2 * H :]
            dr = drh * h * r * (1 - r)
            da = np.concatenate([dz, dr, dn], axis=1)
            self.dWx += da.T @ self.X[t]
            self.db += da.sum(axis=0)
            self.dWh[:H] += dz.T @ h
            self.dWh[H : 2 * H] += dr.T @ h
            self.dWh[2 * H :] += dn.T @ (r * h)
            dX[t] = da @ self.Wx
            carry = dh * z + drh * r + dz @ self.Wh[:H] + dr @ self.Wh[H : 2 * H]
        return dX
