"""min-char-rnn's lossFun (Karpathy, 2015), as people copy it: the weights are module globals,
inputs and targets lists of ints, column vectors throughout.  ``lossFun`` is right; every other
function here gets one thing wrong, the way hand-written BPTT usually goes wrong, for
``bptt check`` to diagnose.  Each is the same loop with one flag changed."""

import numpy as np

vocab_size, hidden_size = 4, 5  # bptt check sets these, and the weights, before each call
rng = np.random.default_rng(0)
Wxh = rng.standard_normal((hidden_size, vocab_size)) * 0.01
Whh = rng.standard_normal((hidden_size, hidden_size)) * 0.01
Why = rng.standard_normal((vocab_size, hidden_size)) * 0.01
bh = np.zeros((hidden_size, 1))
by = np.zeros((vocab_size, 1))


def _loss_fun(inputs, targets, hprev, recur=True, act=True, truncate=None, lag=1, swap=False, mean=False, clip=5.0):
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy
        # back through the state: all the way (dhnext), or `truncate` steps for this J_t alone
        steps = [t] if truncate is None else range(t, max(-1, t - truncate), -1)
        for k in steps:
            if truncate is None:
                dh = dh + dhnext if recur else dh
            dhraw = (1 - hs[k] * hs[k]) * dh if act else dh
            dbh += dhraw
            dWxh += dhraw @ xs[k].T
            dWhh += (hs[k - 1] @ dhraw.T) if swap else dhraw @ hs[k - lag].T
            dh = Whh.T @ dhraw
            dhnext = dh
    grads = [dWxh, dWhh, dWhy, dbh, dby]
    if mean:
        loss, grads = loss / len(inputs), [g / len(inputs) for g in grads]
    for dparam in grads:
        np.clip(dparam, -clip, clip, out=dparam)  # min-char-rnn clips here, at 5, against exploding gradients
    return (loss, *grads, hs[len(inputs) - 1])


def lossFun(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev)


def lossFun_no_recurrence(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, recur=False)


def lossFun_no_tanh_derivative(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, act=False)


def lossFun_truncated(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, truncate=2)


def lossFun_wrong_step(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, lag=0)


def lossFun_swapped(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, swap=True)


def lossFun_mean(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, mean=True)


def lossFun_clipped(inputs, targets, hprev):
    return _loss_fun(inputs, targets, hprev, clip=0.05)


def lossFun_weights_as_arguments(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """The weights passed in, not read from globals: the same loop on the arguments."""
    saved = dict(globals())
    globals().update(Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by)
    try:
        return _loss_fun(inputs, targets, hprev)
    finally:
        globals().update({k: saved[k] for k in ("Wxh", "Whh", "Why", "bh", "by")})


def lossFun_three_values(inputs, targets, hprev):
    loss, dWxh, dWhh, *_ = _loss_fun(inputs, targets, hprev)
    return loss, dWxh, dWhh
