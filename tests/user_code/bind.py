"""min-char-rnn's lossFun with its arguments in other orders, as copies of it have them: the sizes and
weights passed as arguments, hprev last.  Both are right; bptt check binds every argument by name."""

import numpy as np


def lossFun(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by):
    xs, hs, ps, loss = {}, {-1: np.copy(hprev)}, {}, 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dhraw = (1 - hs[t] * hs[t]) * (Why.T @ dy + dhnext)
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def loss_hprev_last(Wxh, Whh, Why, bh, by, inputs, targets, vocab_size, hprev):
    return lossFun(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by)


def loss_positional_only(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by, /):
    return lossFun(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by)
