"""Hand-written BPTT for tied embeddings (tests/cells/tied.cell: a = E x, h = tanh(a + U h[t-1]), y = E^T h):
one sequence, column vectors, a dict by name.  ``tied`` is right; ``tied_rows`` stores E as (n_x, n_h) and
works on rows; ``tied_forgets_output`` leaves the output's share h dy^T out of dE."""

import numpy as np


def _bptt(P, xs, labels, h0, tied_grad=True):
    E, U = P["E"], P["U"]
    T = len(xs)
    hs, ps = {-1: h0}, {}
    loss = 0.0
    for t in range(T):
        hs[t] = np.tanh(E @ xs[t] + U @ hs[t - 1])
        y = E.T @ hs[t]
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][labels[t]])
    g = {k: np.zeros_like(v) for k, v in P.items()}
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        if tied_grad:
            g["E"] += np.outer(hs[t], dy)
        dz = (1 - hs[t] ** 2) * (E @ dy + carry)
        g["E"] += np.outer(dz, xs[t])
        g["U"] += np.outer(dz, hs[t - 1])
        carry = U.T @ dz
    return loss, g


def tied(params, xs, labels, h0):
    return _bptt(params, xs, labels, h0)


def tied_forgets_output(params, xs, labels, h0):
    """The output's share of dE left out: the embedding's alone."""
    return _bptt(params, xs, labels, h0, tied_grad=False)


def tied_rows(params, xs, labels, h0):
    """Weights stored (in, out), row vectors: E is (n_x, n_h), used as x @ E and h @ E.T."""
    E, U = params["E"], params["U"]
    T = len(xs)
    hs, ps = {-1: h0}, {}
    loss = 0.0
    for t in range(T):
        hs[t] = np.tanh(xs[t] @ E + hs[t - 1] @ U)
        y = hs[t] @ E.T
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][labels[t]])
    g = {k: np.zeros_like(v) for k, v in params.items()}
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        g["E"] += np.outer(dy, hs[t])
        dz = (1 - hs[t] ** 2) * (dy @ E + carry)
        g["E"] += np.outer(xs[t], dz)
        g["U"] += np.outer(hs[t - 1], dz)
        carry = dz @ U.T
    return loss, g
