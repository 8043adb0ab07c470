import numpy as np

class Elman:
    @staticmethod
    def lossFun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
        xs, hs, ps = {}, {-1: hprev}, {}
        loss = 0
        for t in range(len(inputs)):
            xs[t] = np.zeros((Wxh.shape[1], 1)); xs[t][inputs[t]] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t-1] + bh)
            y = Why @ hs[t] + by
            ps[t] = np.exp(y) / np.exp(y).sum()
            loss -= np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby = np.zeros_like(bh), np.zeros_like(by)
        dhn = np.zeros_like(hprev)
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy(); dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T; dby += dy
            dz = (1 - hs[t]**2) * (Why.T @ dy + dhn)
            dWxh += dz @ xs[t].T; dWhh += dz @ hs[t-1].T; dbh += dz
            dhn = Whh.T @ dz
        return loss, dWxh, dWhh, dWhy, dbh, dby

def rnn_forward_only_h(x, h0, Wx, Wh, b):
    h, prev = [], h0
    for t in range(x.shape[1]):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h.append(prev)
    return np.stack(h, 1)

def rnn_backward_recompute(dh, x, h0, Wx, Wh, b):
    h = rnn_forward_only_h(x, h0, Wx, Wh, b)
    N, T, H = dh.shape
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dx = np.zeros_like(x); dn = np.zeros((N, H))
    for t in reversed(range(T)):
        dz = (dh[:, t] + dn) * (1 - h[:, t] ** 2)
        prev = h[:, t-1] if t else h0
        dWx += x[:, t].T @ dz; dWh += prev.T @ dz; db += dz.sum(0); dx[:, t] = dz @ Wx.T
        dn = dz @ Wh.T
    return dx, dn, dWx, dWh, db

def rnn_backward_cache(dh, cache):
    x, h0 = cache
    return dh

class Layer:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
    def forward(self, xs, h0):
        Wx, Wh, b = self.params
        self.xs, self.h0 = xs, h0
        self.hs = rnn_forward_only_h(xs, h0, Wx, Wh, b)
        return self.hs
    def backward(self, dhs):
        Wx, Wh, b = self.params
        dx, dh0, dWx, dWh, db = rnn_backward_recompute(dhs, self.xs, self.h0, Wx, Wh, b)
        self.grads[0] = dWx      # rebinding (not [...] =): a common style
        self.grads[1] = dWh
        self.grads[2] = db
        return dx
