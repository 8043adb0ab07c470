"""Style: a class-based port of min-char-rnn, as found in many personal repositories: the weights
live on an ``RNN`` object, ``train`` computes the loss and the gradients of one chunk, and an
Adagrad ``update`` applies them.  The text is read at import time and a ``__main__`` block trains.

    RNN.train(inputs, targets, hprev, vocab_size)          RIGHT.  Elman cell, loss summed over the
                                                           steps, no clipping.  The states live in a
                                                           list preallocated with one spare slot at
                                                           the end, which holds hprev, so that
                                                           hs[t-1] at t = 0 is hprev.
    RNNAliased.train(inputs, targets, hprev, vocab_size)   WRONG (a bug seen in the wild): the states
                                                           live in an array hs = np.zeros((T, H, 1))
                                                           with no slot for hprev.  At t = 0 the
                                                           forward reads hs[-1], still zero (hprev
                                                           is ignored: the chunk starts from 0), and
                                                           the backward's dWhh term at t = 0 reads
                                                           hs[-1] = h[T-1], the LAST state, where
                                                           the initial state belongs.  With hprev = 0
                                                           the loss is right and only dWhh is wrong.
    RNN.sample(h, seed_ix, n), RNN.update(...)             no gradients.

Conventions: column vectors, weights (out, in) on self: Wxh (H, V), Whh (H, H), Why (V, H), bh (H, 1),
by (V, 1); inputs and targets are lists of character indices; the loops run over len(inputs); the
one-hot width comes from the vocab_size argument; returns (loss, dWxh, dWhh, dWhy, dbh, dby,
hs[len(inputs)-1]).

Written from scratch for bptt derive's tests (bptt check on code with no wrapper).
"""

import numpy as np

with open('input.txt', 'r') as f:
    data = f.read()
chars = sorted(list(set(data)))
data_size, vocab_size = len(data), len(chars)
char_to_ix = {ch: i for i, ch in enumerate(chars)}
ix_to_char = {i: ch for i, ch in enumerate(chars)}


class RNN:
    """A vanilla character RNN trained with Adagrad."""

    def __init__(self, hidden_size, vocab_size, seq_length, learning_rate):
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.seq_length = seq_length
        self.learning_rate = learning_rate
        # weights
        self.Wxh = np.random.randn(hidden_size, vocab_size) * 0.01
        self.Whh = np.random.randn(hidden_size, hidden_size) * 0.01
        self.Why = np.random.randn(vocab_size, hidden_size) * 0.01
        self.bh = np.zeros((hidden_size, 1))
        self.by = np.zeros((vocab_size, 1))
        # Adagrad memory
        self.mWxh, self.mWhh, self.mWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        self.mbh, self.mby = np.zeros_like(self.bh), np.zeros_like(self.by)

    def train(self, inputs, targets, hprev, vocab_size):
        """Forward and backward over one chunk; returns the loss, the gradients and the last state."""
        T = len(inputs)
        xs = [None] * T
        hs = [None] * (T + 1)  # hs[T], alias hs[-1], holds the initial state
        ps = [None] * T
        hs[-1] = np.copy(hprev)
        loss = 0
        for t in range(T):
            xs[t] = np.zeros((vocab_size, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(self.Wxh @ xs[t] + self.Whh @ hs[t - 1] + self.bh)
            y = self.Why @ hs[t] + self.by
            ps[t] = np.exp(y) / np.sum(np.exp(y))
            loss += -np.log(ps[t][targets[t], 0])

        dWxh, dWhh, dWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        dbh, dby = np.zeros_like(self.bh), np.zeros_like(self.by)
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(T)):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = self.Why.T @ dy + dhnext
            dhraw = (1 - hs[t] ** 2) * dh
            dbh += dhraw
            dWxh += dhraw @ xs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = self.Whh.T @ dhraw
        return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]

    def update(self, dWxh, dWhh, dWhy, dbh, dby):
        params = [self.Wxh, self.Whh, self.Why, self.bh, self.by]
        grads = [dWxh, dWhh, dWhy, dbh, dby]
        mems = [self.mWxh, self.mWhh, self.mWhy, self.mbh, self.mby]
        for param, dparam, mem in zip(params, grads, mems):
            mem += dparam * dparam
            param -= self.learning_rate * dparam / np.sqrt(mem + 1e-8)

    def sample(self, h, seed_ix, n):
        x = np.zeros((self.vocab_size, 1))
        x[seed_ix] = 1
        ixes = []
        for _ in range(n):
            h = np.tanh(self.Wxh @ x + self.Whh @ h + self.bh)
            y = self.Why @ h + self.by
            p = np.exp(y) / np.sum(np.exp(y))
            ix = np.random.choice(range(self.vocab_size), p=p.ravel())
            x = np.zeros((self.vocab_size, 1))
            x[ix] = 1
            ixes.append(ix)
        return ixes


class RNNAliased(RNN):
    """The same network with the states in one preallocated array (faster, the author thought)."""

    def train(self, inputs, targets, hprev, vocab_size):
        T = len(inputs)
        H = self.hidden_size
        xs = np.zeros((T, vocab_size, 1))
        hs = np.zeros((T, H, 1))
        ps = np.zeros((T, vocab_size, 1))
        loss = 0
        for t in range(T):
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(self.Wxh @ xs[t] + self.Whh @ hs[t - 1] + self.bh)
            y = self.Why @ hs[t] + self.by
            ps[t] = np.exp(y) / np.sum(np.exp(y))
            loss += -np.log(ps[t][targets[t], 0])

        dWxh, dWhh, dWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        dbh, dby = np.zeros_like(self.bh), np.zeros_like(self.by)
        dhnext = np.zeros((H, 1))
        for t in reversed(range(T)):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = self.Why.T @ dy + dhnext
            dhraw = (1 - hs[t] ** 2) * dh
            dbh += dhraw
            dWxh += dhraw @ xs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = self.Whh.T @ dhraw
        return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


if __name__ == '__main__':
    rnn = RNN(hidden_size=100, vocab_size=vocab_size, seq_length=25, learning_rate=1e-1)
    n, p = 0, 0
    smooth_loss = -np.log(1.0 / vocab_size) * rnn.seq_length
    while n <= 100000:
        if p + rnn.seq_length + 1 >= len(data) or n == 0:
            hprev = np.zeros((rnn.hidden_size, 1))
            p = 0
        inputs = [char_to_ix[ch] for ch in data[p:p + rnn.seq_length]]
        targets = [char_to_ix[ch] for ch in data[p + 1:p + rnn.seq_length + 1]]

        loss, dWxh, dWhh, dWhy, dbh, dby, hprev = rnn.train(inputs, targets, hprev, vocab_size)
        smooth_loss = smooth_loss * 0.999 + loss * 0.001
        rnn.update(dWxh, dWhh, dWhy, dbh, dby)

        if n % 1000 == 0:
            print(f'iter {n}, loss {smooth_loss:.4f}')
            print(''.join(ix_to_char[ix] for ix in rnn.sample(hprev, inputs[0], 200)))
        p += rnn.seq_length
        n += 1
