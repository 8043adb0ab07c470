import numpy as np

def grads(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """Gradients only; uses hprev properly. Two bugs: dWhy has its sign flipped, and at t = 0 the
    dWhh term uses zeros instead of hprev."""
    V, H = Why.shape[0], Whh.shape[0]
    xs, hs, ps = {}, {-1: hprev}, {}
    for t in range(len(inputs)):
        xs[t] = np.zeros((V, 1)); xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y) / np.exp(y).sum()
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros((H, 1))
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy(); dy[targets[t]] -= 1
        dWhy -= 3 * dy @ hs[t].T; dby += dy
        dz = (1 - hs[t] ** 2) * (Why.T @ dy + dhnext)
        dbh += dz; dWxh += dz @ xs[t].T
        dWhh += dz @ (hs[t - 1] if t > 0 else np.zeros((H, 1))).T
        dhnext = Whh.T @ dz
    return dWxh, dWhh, dWhy, dbh, dby
