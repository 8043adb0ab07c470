import numpy as np

def lossFun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """Forward starts from zeros (ignores hprev); the backward's outer product at t=0 uses hprev."""
    V, H = Why.shape[0], Whh.shape[0]
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.zeros((H, 1))
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((V, 1)); xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y) / np.exp(y).sum()
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros((H, 1))
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy(); dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T; dby += dy
        dh = Why.T @ dy + dhnext
        dz = (1 - hs[t] ** 2) * dh
        dbh += dz; dWxh += dz @ xs[t].T
        prev = hs[t - 1] if t > 0 else hprev       # BUG: inconsistent with the forward
        dWhh += dz @ prev.T
        dhnext = Whh.T @ dz
    return loss, dWxh, dWhh, dWhy, dbh, dby
