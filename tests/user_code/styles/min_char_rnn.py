"""Style: Karpathy's min-char-rnn.py (2015), the way people keep a copy of it, in Python 3.

A whole script, not a library: it reads input.txt when it is run, builds the vocabulary, keeps the
weights and the hyperparameters as module globals, and ends in an endless Adagrad loop.

    lossFun(inputs, targets, hprev)   RIGHT.  Elman cell, loss summed over the steps; the gradients
                                      are clipped to [-5, 5] in place before they are returned.
    sample(h, seed_ix, n)             no gradients: draws n character indices from the model.

Conventions: column vectors ((n, 1) arrays); weights (out, in): Wxh (H, V), Whh (H, H), Why (V, H);
biases bh (H, 1), by (V, 1); inputs and targets are lists of character indices.  Both loops run over
the global ``seq_length`` (not len(inputs)), so a caller sets it to the sequence's length.  hprev
(H, 1) is the initial state; the last state, hs[seq_length-1], is returned for the next chunk.

Written from scratch for bptt derive's tests (bptt check on code with no wrapper).
"""

import numpy as np

# the corpus: one plain text file, read whole
data = open('input.txt', 'r').read()
chars = sorted(set(data))
data_size, vocab_size = len(data), len(chars)
print('%d characters in the text, %d distinct' % (data_size, vocab_size))
char_to_ix = {ch: i for i, ch in enumerate(chars)}
ix_to_char = {i: ch for i, ch in enumerate(chars)}

# hyperparameters
hidden_size = 100; seq_length = 25; learning_rate = 1e-1

# the model: small random weights, zero biases
Wxh = np.random.randn(hidden_size, vocab_size) * 0.01  # input -> hidden
Whh = np.random.randn(hidden_size, hidden_size) * 0.01  # hidden -> hidden
Why = np.random.randn(vocab_size, hidden_size) * 0.01  # hidden -> scores
bh = np.zeros((hidden_size, 1))
by = np.zeros((vocab_size, 1))


def lossFun(inputs, targets, hprev):
    """Run the net over one chunk and back.

    inputs, targets: lists of ints (targets[t] is the character after inputs[t]).
    hprev: (hidden_size, 1), the state the chunk starts from.
    Returns the loss, the five gradients and the state after the last character.
    """
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)  # so that hs[t-1] works at t = 0
    loss = 0
    # forward
    for t in range(seq_length):
        xs[t] = np.zeros((vocab_size, 1))  # one-hot column for this character
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        ys[t] = np.dot(Why, hs[t]) + by  # scores for the next character
        ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))  # softmax
        loss += -np.log(ps[t][targets[t], 0])  # cross-entropy of the right character
    # backward, last step first
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(seq_length)):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1  # d loss / d scores = p - onehot(target)
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext  # from this step's output and from the step after
        dhraw = (1 - hs[t] * hs[t]) * dh  # through the tanh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)  # keep exploding gradients in check
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[seq_length - 1]


def sample(h, seed_ix, n):
    """Draw n character indices from the model, starting from state h and character seed_ix."""
    x = np.zeros((vocab_size, 1))
    x[seed_ix] = 1
    ixes = []
    for _ in range(n):
        h = np.tanh(np.dot(Wxh, x) + np.dot(Whh, h) + bh)
        y = np.dot(Why, h) + by
        p = np.exp(y) / np.sum(np.exp(y))
        ix = np.random.choice(range(vocab_size), p=p.ravel())
        x = np.zeros((vocab_size, 1))
        x[ix] = 1
        ixes.append(ix)
    return ixes


n, p = 0, 0
mWxh, mWhh, mWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
mbh, mby = np.zeros_like(bh), np.zeros_like(by)  # Adagrad's running sums of squares
smooth_loss = -np.log(1.0 / vocab_size) * seq_length  # what a uniform guess costs
while True:
    # next chunk of seq_length characters; back to the start (and a fresh state) at the end
    if p + seq_length + 1 >= len(data) or n == 0:
        hprev = np.zeros((hidden_size, 1))
        p = 0
    inputs = [char_to_ix[ch] for ch in data[p:p + seq_length]]
    targets = [char_to_ix[ch] for ch in data[p + 1:p + seq_length + 1]]

    # show what the model writes, every so often
    if n % 100 == 0:
        sample_ix = sample(hprev, inputs[0], 200)
        txt = ''.join(ix_to_char[ix] for ix in sample_ix)
        print('----\n %s \n----' % (txt,))

    loss, dWxh, dWhh, dWhy, dbh, dby, hprev = lossFun(inputs, targets, hprev)
    smooth_loss = smooth_loss * 0.999 + loss * 0.001
    if n % 100 == 0:
        print('iter %d, loss: %f' % (n, smooth_loss))

    # Adagrad step
    for param, dparam, mem in zip([Wxh, Whh, Why, bh, by],
                                  [dWxh, dWhh, dWhy, dbh, dby],
                                  [mWxh, mWhh, mWhy, mbh, mby]):
        mem += dparam * dparam
        param += -learning_rate * dparam / np.sqrt(mem + 1e-8)

    p += seq_length
    n += 1
