"""A count model written by hand: an RNN whose outputs are the log-rates of Poisson counts, with an
L2 penalty on the log-rates (the corpus cell tests/cells/poisson.cell).  ``loss_fun`` is right;
``loss_fun_no_penalty_gradient`` adds the penalty to the loss but forgets it in the gradient."""

import numpy as np

hidden_size = 8


def _forward(inputs, counts, hprev, Wxh, Whh, Why, by):
    xs, hs, ys = {}, {-1: np.copy(hprev)}, {}
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = inputs[t]
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1])
        ys[t] = Why @ hs[t] + by
        loss += np.sum(np.exp(ys[t]) - counts[t] * ys[t]) + 0.25 * np.sum(ys[t] * ys[t])
    return xs, hs, ys, loss


def _backward(xs, hs, ys, counts, Wxh, Whh, Why, by, penalty):
    dWxh, dWhh, dWhy, dby = map(np.zeros_like, (Wxh, Whh, Why, by))
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(xs))):
        dy = np.exp(ys[t]) - counts[t] + penalty * ys[t]
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dhraw = (1 - hs[t] * hs[t]) * (Why.T @ dy + dhnext)
        dWxh += np.outer(dhraw, xs[t])
        dWhh += np.outer(dhraw, hs[t - 1])
        dhnext = Whh.T @ dhraw
    return dWxh, dWhh, dWhy, dby, dhnext


def loss_fun(inputs, counts, hprev, Wxh, Whh, Why, by):
    """inputs (T, n_x) rows, counts (T, n_y): the Poisson negative log-likelihood (up to log k!)."""
    xs, hs, ys, loss = _forward(inputs, counts, hprev, Wxh, Whh, Why, by)
    return loss, *_backward(xs, hs, ys, counts, Wxh, Whh, Why, by, penalty=0.5)


def loss_fun_no_penalty_gradient(inputs, counts, hprev, Wxh, Whh, Why, by):
    xs, hs, ys, loss = _forward(inputs, counts, hprev, Wxh, Whh, Why, by)
    return loss, *_backward(xs, hs, ys, counts, Wxh, Whh, Why, by, penalty=0.0)
