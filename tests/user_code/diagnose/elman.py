"""An Elman RNN's BPTT written by hand, with the generic signature fn(params, xs, labels, h0) ->
(loss, grads): one sequence, xs (T, n_x) one-hot, labels (T,), h0 (n_h,).  ``elman`` is right;
the others get wrong what their docstrings say, for ``bptt check`` to name."""

import numpy as np


def _softmax(y):
    e = np.exp(y - y.max())
    return e / e.sum()


def _elman(P, xs, labels, h0, recur=True, mean=False):
    T = len(xs)
    hs, ps = {-1: h0}, {}
    loss = 0.0
    for t in range(T):
        hs[t] = np.tanh(P["W_xh"] @ xs[t] + P["W_hh"] @ hs[t - 1] + P["b_h"])
        ps[t] = _softmax(P["W_hy"] @ hs[t] + P["b_y"])
        loss -= np.log(ps[t][labels[t]])
    g = {k: np.zeros_like(v) for k, v in P.items()}
    dh_next = np.zeros_like(h0)
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        g["W_hy"] += np.outer(dy, hs[t])
        g["b_y"] += dy
        dh = P["W_hy"].T @ dy + (dh_next if recur else 0)
        dz = (1 - hs[t] ** 2) * dh
        g["W_xh"] += np.outer(dz, xs[t])
        g["W_hh"] += np.outer(dz, hs[t - 1])
        g["b_h"] += dz
        dh_next = P["W_hh"].T @ dz
    if mean:
        loss, g = loss / T, {k: v / T for k, v in g.items()}
    return loss, g


def elman(params, xs, labels, h0):
    return _elman(params, xs, labels, h0)


def elman_mean_no_recurrence(params, xs, labels, h0):
    """The loss averaged over the T steps, and dh_next never added: two mistakes at once."""
    return _elman(params, xs, labels, h0, recur=False, mean=True)


def elman_ignores_h0(params, xs, labels, h0):
    """hprev is taken and never used: the sequence starts from zero."""
    return _elman(params, xs, labels, np.zeros_like(h0))


class RNN:
    """A class-based min-char-rnn: the states live in an array of T rows, hs[t] for step t + 1, so
    hs[t - 1] at t = 0 is hs[-1], the last row: zero while the forward pass runs (the given h0 is
    never read) and h_T, the last state, by the time the backward pass reads it."""

    def __init__(self, params):
        self.W_xh, self.W_hh, self.W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
        self.b_h, self.b_y = params["b_h"], params["b_y"]

    def forward(self, xs, labels, h0, use_h0=False):
        T, H = len(xs), len(self.b_h)
        self.xs, self.labels = xs, labels
        self.hs = np.zeros((T, H))
        self.ps = np.zeros((T, len(self.b_y)))
        loss = 0.0
        for t in range(T):
            hprev = h0 if use_h0 and t == 0 else self.hs[t - 1]
            self.hs[t] = np.tanh(self.W_xh @ xs[t] + self.W_hh @ hprev + self.b_h)
            self.ps[t] = _softmax(self.W_hy @ self.hs[t] + self.b_y)
            loss -= np.log(self.ps[t, labels[t]])
        return loss

    def backward(self):
        dW_xh, dW_hh, dW_hy = np.zeros_like(self.W_xh), np.zeros_like(self.W_hh), np.zeros_like(self.W_hy)
        db_h, db_y = np.zeros_like(self.b_h), np.zeros_like(self.b_y)
        dh_next = np.zeros_like(self.b_h)
        for t in reversed(range(len(self.xs))):
            dy = self.ps[t].copy()
            dy[self.labels[t]] -= 1
            dW_hy += np.outer(dy, self.hs[t])
            db_y += dy
            dz = (1 - self.hs[t] ** 2) * (self.W_hy.T @ dy + dh_next)
            dW_xh += np.outer(dz, self.xs[t])
            dW_hh += np.outer(dz, self.hs[t - 1])  # at t = 0, hs[-1] is the last state
            db_h += dz
            dh_next = self.W_hh.T @ dz
        return {"W_xh": dW_xh, "W_hh": dW_hh, "W_hy": dW_hy, "b_h": db_h, "b_y": db_y}


def elman_class(params, xs, labels, h0):
    """The class above, as written: starts from zero, and its first outer product reads h_T."""
    rnn = RNN(params)
    loss = rnn.forward(xs, labels, h0)
    return loss, rnn.backward()


def elman_class_with_h0(params, xs, labels, h0):
    """The class with its forward pass fixed to start from h0; the backward still reads hs[-1] at t = 0."""
    rnn = RNN(params)
    loss = rnn.forward(xs, labels, h0, use_h0=True)
    return loss, rnn.backward()
