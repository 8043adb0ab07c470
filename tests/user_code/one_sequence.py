"""An Elman layer over one sequence, as tutorials write it before they batch: x (T, D), h0 (H,),
weights (out, in); ``forward`` returns every h_t as (T, H), ``backward`` takes dh (T, H) and
returns its gradients in a dict.  Right."""

import numpy as np


def forward(x, h0, Wxh, Whh, bh):
    hs = [h0]
    for x_t in x:
        hs.append(np.tanh(Wxh @ x_t + Whh @ hs[-1] + bh))
    return np.array(hs[1:]), (x, np.array(hs), Wxh, Whh)


def backward(dh, cache):
    x, hs, Wxh, Whh = cache
    grads = {"Wxh": np.zeros_like(Wxh), "Whh": np.zeros_like(Whh), "bh": np.zeros(Whh.shape[0])}
    carry = np.zeros(Whh.shape[0])
    dx = np.zeros_like(x)
    for t in reversed(range(len(x))):
        dz = (1 - hs[t + 1] ** 2) * (dh[t] + carry)
        grads["Wxh"] += np.outer(dz, x[t])
        grads["Whh"] += np.outer(dz, hs[t])
        grads["bh"] += dz
        dx[t] = Wxh.T @ dz
        carry = Whh.T @ dz
    grads["h0"] = carry
    grads["x"] = dx
    return grads
