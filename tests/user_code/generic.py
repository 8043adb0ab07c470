"""Hand-written BPTT with the generic signature fn(params, xs, labels, h0) -> (loss, grads): one
sequence, row vectors, dicts by name.  ``elman`` is right; the others differ as their names say."""

import numpy as np


def _bptt(P, xs, labels, h0, slope=lambda h: 1 - h * h, swap_x=False):
    T = len(xs)
    hs, ps = {-1: h0}, {}
    loss = 0.0
    for t in range(T):
        hs[t] = np.tanh(P["W_xh"] @ xs[t] + P["W_hh"] @ hs[t - 1] + P["b_h"])
        y = P["W_hy"] @ hs[t] + P["b_y"]
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][labels[t]])
    g = {k: np.zeros_like(v) for k, v in P.items()}
    if swap_x:
        g["W_xh"] = g["W_xh"].T.copy()
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        g["W_hy"] += np.outer(dy, hs[t])
        g["b_y"] += dy
        dz = slope(hs[t]) * (P["W_hy"].T @ dy + carry)
        g["W_xh"] += np.outer(xs[t], dz) if swap_x else np.outer(dz, xs[t])
        g["W_hh"] += np.outer(dz, hs[t - 1])
        g["b_h"] += dz
        carry = P["W_hh"].T @ dz
    return loss, g


def elman(params, xs, labels, h0):
    return _bptt(params, xs, labels, h0)


def elman_wrong_slope(params, xs, labels, h0):
    """tanh's derivative written as 1 - h: none of the usual mistakes."""
    return _bptt(params, xs, labels, h0, slope=lambda h: 1 - h)


def elman_swapped_input(params, xs, labels, h0):
    """dW_xh as x dz^T: the shape of W_xh transposed."""
    return _bptt(params, xs, labels, h0, swap_x=True)


def goodfellow(params, xs, labels, h0):
    """Deep Learning (section 10.2.2) calls them U, W, V, b, c: bptt check needs --map."""
    names = {"U": "W_xh", "W": "W_hh", "V": "W_hy", "b": "b_h", "c": "b_y"}
    loss, g = _bptt({names[k]: v for k, v in params.items()}, xs, labels, h0)
    return loss, {k: g[v] for k, v in names.items()}


def raises(params, xs, labels, h0):
    return params["no such weight"]


def nan_gradient(params, xs, labels, h0):
    loss, g = _bptt(params, xs, labels, h0)
    g["W_hh"][0, 0] = np.nan
    return loss, g


def exits(params, xs, labels, h0):
    raise SystemExit(0)


def string_gradient(params, xs, labels, h0):
    loss, g = _bptt(params, xs, labels, h0)
    g["b_h"] = "zeros"
    return loss, g


def writes_into_its_arguments(params, xs, labels, h0):
    """Right, but it scribbles on what it was given afterwards: the check must not mind."""
    loss, g = _bptt(params, xs, labels, h0)
    for v in params.values():
        v += 1.0
    h0 += 1.0
    return loss, g


def _softplus_bptt(P, xs, labels, h0, slope=True):
    """The Elman RNN with softplus units, h = log(1 + exp(z)); its derivative is sigmoid(z)."""
    zs, hs, ps = {}, {-1: h0}, {}
    loss = 0.0
    for t in range(len(xs)):
        zs[t] = P["W_xh"] @ xs[t] + P["W_hh"] @ hs[t - 1] + P["b_h"]
        hs[t] = np.logaddexp(0, zs[t])
        y = P["W_hy"] @ hs[t] + P["b_y"]
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][labels[t]])
    g = {k: np.zeros_like(v) for k, v in P.items()}
    carry = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        g["W_hy"] += np.outer(dy, hs[t])
        g["b_y"] += dy
        dh = P["W_hy"].T @ dy + carry
        dz = dh / (1 + np.exp(-zs[t])) if slope else dh
        g["W_xh"] += np.outer(dz, xs[t])
        g["W_hh"] += np.outer(dz, hs[t - 1])
        g["b_h"] += dz
        carry = P["W_hh"].T @ dz
    return loss, g


def softplus(params, xs, labels, h0):
    return _softplus_bptt(params, xs, labels, h0)


def softplus_no_slope(params, xs, labels, h0):
    """softplus's derivative, sigmoid(z), left out: dz = dh."""
    return _softplus_bptt(params, xs, labels, h0, slope=False)
