"""A character-level vanilla RNN trained on a text file, in the style min-char-rnn made popular:
everything at the top level, the weights as globals, and a training loop that never ends.
Run as ``python min_char_script.py [SEQ_LENGTH]`` beside an input.txt.  Written for bptt check's
loader tests: its lossFun must be found without the data file, the command line or the loop."""

import sys

import numpy as np

try:
    import cPickle as pickle
except ImportError:
    import pickle

# the data: one character per step
text = open("input.txt").read()
symbols = sorted(set(text))
n_text, vocab_size = len(text), len(symbols)
print(f"{n_text} characters, {vocab_size} of them different")
char_to_ix = {c: i for i, c in enumerate(symbols)}
ix_to_char = {i: c for i, c in enumerate(symbols)}

# hyperparameters
hidden_size = 100
seq_length = int(sys.argv[1]) if len(sys.argv) > 1 else 25
learning_rate = 1e-1

# the model's parameters
Wxh = np.random.randn(hidden_size, vocab_size) * 0.01
Whh = np.random.randn(hidden_size, hidden_size) * 0.01
Why = np.random.randn(vocab_size, hidden_size) * 0.01
bh = np.zeros((hidden_size, 1))
by = np.zeros((vocab_size, 1))


def lossFun(inputs, targets, hprev):
    """inputs, targets: lists of character indices; hprev: the hidden state before them (H x 1).
    Returns the loss, the parameters' gradients and the last hidden state."""
    xs, hs, ps = {}, {-1: np.copy(hprev)}, {}
    loss = 0.0
    for t, (i, j) in enumerate(zip(inputs, targets)):
        xs[t] = np.zeros((vocab_size, 1))
        xs[t][i] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        scores = Why @ hs[t] + by
        e = np.exp(scores - scores.max())
        ps[t] = e / e.sum()
        loss -= np.log(ps[t][j, 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dh_next = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dz = (1 - hs[t] ** 2) * (Why.T @ dy + dh_next)
        dbh += dz
        dWxh += dz @ xs[t].T
        dWhh += dz @ hs[t - 1].T
        dh_next = Whh.T @ dz
    for g in (dWxh, dWhh, dWhy, dbh, dby):
        np.clip(g, -5, 5, out=g)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def sample(h, seed_ix, n):
    """n character indices drawn from the model, starting from seed_ix in state h."""
    x = np.zeros((vocab_size, 1))
    x[seed_ix] = 1
    drawn = []
    for _ in range(n):
        h = np.tanh(Wxh @ x + Whh @ h + bh)
        e = np.exp(Why @ h + by)
        ix = np.random.choice(vocab_size, p=(e / e.sum()).ravel())
        x = np.zeros((vocab_size, 1))
        x[ix] = 1
        drawn.append(ix)
    return drawn


n, p = 0, 0
mWxh, mWhh, mWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
mbh, mby = np.zeros_like(bh), np.zeros_like(by)  # Adagrad's memory
smooth_loss = -np.log(1.0 / vocab_size) * seq_length
while True:
    if p + seq_length + 1 >= len(text) or n == 0:
        hprev = np.zeros((hidden_size, 1))
        p = 0
    inputs = [char_to_ix[c] for c in text[p : p + seq_length]]
    targets = [char_to_ix[c] for c in text[p + 1 : p + seq_length + 1]]
    if n % 100 == 0:
        print("".join(ix_to_char[i] for i in sample(hprev, inputs[0], 200)))
    loss, dWxh, dWhh, dWhy, dbh, dby, hprev = lossFun(inputs, targets, hprev)
    smooth_loss = smooth_loss * 0.999 + loss * 0.001
    for param, dparam, mem in zip([Wxh, Whh, Why, bh, by], [dWxh, dWhh, dWhy, dbh, dby], [mWxh, mWhh, mWhy, mbh, mby]):
        mem += dparam * dparam
        param += -learning_rate * dparam / np.sqrt(mem + 1e-8)
    if n % 1000 == 0:
        pickle.dump((Wxh, Whh, Why, bh, by), open("weights.pkl", "wb"))
    p += seq_length
    n += 1
