"""A hand-written CTRNN (tests/cells/ctrnn.cell) with a correct gradient."""
import numpy as np

DT, TAU = 0.1, 2.0
RATE = DT / TAU


def loss_fun(inputs, targets, hprev, W, U, b, V):
    hs, zs, ys, loss = {-1: np.copy(hprev)}, {}, {}, 0.0
    for t in range(len(inputs)):
        zs[t] = np.tanh(W @ inputs[t] + U @ hs[t - 1] + b)
        hs[t] = (1 - RATE) * hs[t - 1] + RATE * zs[t]
        ys[t] = V @ hs[t] / TAU
        loss += 0.5 * np.sum((ys[t] - targets[t]) ** 2)
    dW, dU, db, dV = map(np.zeros_like, (W, U, b, V))
    dhnext = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = ys[t] - targets[t]
        dV += np.outer(dy, hs[t]) / TAU
        dh = V.T @ dy / TAU + dhnext
        dpre = RATE * (1 - zs[t] ** 2) * dh
        dW += np.outer(dpre, inputs[t]); dU += np.outer(dpre, hs[t - 1]); db += dpre
        dhnext = (1 - RATE) * dh + U.T @ dpre
    return loss, dW, dU, db, dV, dhnext

