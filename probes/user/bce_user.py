"""multilabel_named (many-to-one, relu, p = sigmoid(y), BCE) by hand."""
import numpy as np


def loss_fun(inputs, target, hprev, W, U, V):
    hs, pre = {-1: np.copy(hprev)}, {}
    for t in range(len(inputs)):
        pre[t] = W @ inputs[t] + U @ hs[t - 1]
        hs[t] = np.maximum(pre[t], 0)
    T = len(inputs) - 1
    y = V @ hs[T]
    loss = np.sum(np.logaddexp(0, y) - target * y)
    dy = 1 / (1 + np.exp(-y)) - target
    dV = np.outer(dy, hs[T])
    dW, dU = np.zeros_like(W), np.zeros_like(U)
    dh = V.T @ dy
    for t in reversed(range(len(inputs))):
        dpre = (pre[t] > 0) * dh
        dW += np.outer(dpre, inputs[t]); dU += np.outer(dpre, hs[t - 1])
        dh = U.T @ dpre
    return loss, dW, dU, dV, dh
