"""An LSTM's BPTT written by hand, Karpathy-style (dh_next and dc_next carried back), with the
generic signature fn(params, xs, labels, h0, c0) -> (loss, grads).  ``lstm`` is right; each other
function leaves out one thing, as its name says, for ``bptt check`` to name."""

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _lstm(P, xs, labels, h0, c0, carry_c=True, tanh_c_slope=True, tanh_g_slope=True):
    T = len(xs)
    hs, cs = {-1: h0}, {-1: c0}
    f, i, o, g, tc, ps = {}, {}, {}, {}, {}, {}
    loss = 0.0
    for t in range(T):
        x, hp = xs[t], hs[t - 1]
        f[t] = sigmoid(P["W_f"] @ x + P["U_f"] @ hp + P["b_f"])
        i[t] = sigmoid(P["W_i"] @ x + P["U_i"] @ hp + P["b_i"])
        o[t] = sigmoid(P["W_o"] @ x + P["U_o"] @ hp + P["b_o"])
        g[t] = np.tanh(P["W_g"] @ x + P["U_g"] @ hp + P["b_g"])
        cs[t] = f[t] * cs[t - 1] + i[t] * g[t]
        tc[t] = np.tanh(cs[t])
        hs[t] = o[t] * tc[t]
        y = P["W_y"] @ hs[t] + P["b_y"]
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][labels[t]])

    grads = {k: np.zeros_like(v) for k, v in P.items()}
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[labels[t]] -= 1
        grads["W_y"] += np.outer(dy, hs[t])
        grads["b_y"] += dy
        dh = P["W_y"].T @ dy + dh_next
        do = dh * tc[t]
        dtc = dh * o[t]
        dc = dtc * (1 - tc[t] ** 2) if tanh_c_slope else dtc
        if carry_c:
            dc = dc + dc_next
        da = {
            "f": dc * cs[t - 1] * f[t] * (1 - f[t]),
            "i": dc * g[t] * i[t] * (1 - i[t]),
            "o": do * o[t] * (1 - o[t]),
            "g": dc * i[t] * (1 - g[t] ** 2) if tanh_g_slope else dc * i[t],
        }
        dh_next = np.zeros_like(h0)
        for q in "fiog":
            grads[f"W_{q}"] += np.outer(da[q], xs[t])
            grads[f"U_{q}"] += np.outer(da[q], hs[t - 1])
            grads[f"b_{q}"] += da[q]
            dh_next += P[f"U_{q}"].T @ da[q]
        dc_next = dc * f[t]
    return loss, grads


def lstm(params, xs, labels, h0, c0):
    return _lstm(params, xs, labels, h0, c0)


def lstm_no_dc_carry(params, xs, labels, h0, c0):
    """dc = dh * o * (1 - tanh(c)^2), the dc_next from step t + 1 never added."""
    return _lstm(params, xs, labels, h0, c0, carry_c=False)


def lstm_no_tanh_c_slope(params, xs, labels, h0, c0):
    """dc = dh * o + dc_next: tanh'(c) left out, every other derivative kept."""
    return _lstm(params, xs, labels, h0, c0, tanh_c_slope=False)


def lstm_no_tanh_g_slope(params, xs, labels, h0, c0):
    """da_g = dc * i: the candidate's tanh' left out, every other derivative kept."""
    return _lstm(params, xs, labels, h0, c0, tanh_g_slope=False)
