import numpy as np

class CharRNN:
    def __init__(self, vocab_size, hidden_size, optimizer, seed):
        rng = np.random.default_rng(seed)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.Wxh = rng.standard_normal((hidden_size, vocab_size)) * 0.01
        self.Whh = rng.standard_normal((hidden_size, hidden_size)) * 0.01
        self.Why = rng.standard_normal((vocab_size, hidden_size)) * 0.01
        self.bh = np.zeros((hidden_size, 1)); self.by = np.zeros((vocab_size, 1))
        self.optimizer = optimizer
        self.clip = 5.0

    def loss_and_grads(self, inputs, targets, hprev):
        xs, hs, ps = {}, {-1: hprev}, {}
        loss = 0
        for t in range(len(inputs)):
            xs[t] = np.zeros((self.vocab_size, 1)); xs[t][inputs[t]] = 1
            hs[t] = np.tanh(self.Wxh @ xs[t] + self.Whh @ hs[t-1] + self.bh)
            y = self.Why @ hs[t] + self.by
            ps[t] = np.exp(y) / np.exp(y).sum()
            loss -= np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        dbh, dby = np.zeros_like(self.bh), np.zeros_like(self.by)
        dhn = np.zeros_like(hprev)
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy(); dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T; dby += dy
            dz = (1 - hs[t]**2) * (self.Why.T @ dy + dhn)
            dWxh += dz @ xs[t].T; dWhh += dz @ hs[t-1].T; dbh += dz
            dhn = self.Whh.T @ dz
        grads = {"Wxh": dWxh, "Whh": dWhh, "Why": dWhy, "bh": dbh, "by": dby}
        for g in grads.values():
            np.clip(g, -self.clip, self.clip, out=g)
        return loss, grads, hs[len(inputs)-1]
