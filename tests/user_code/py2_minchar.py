"""A character-level RNN's loss and gradients as Python 2 code is kept: print statements, xrange,
dict.iteritems.  Written for bptt check's tests (it must say the file is Python 2, and where)."""
import numpy as np

hidden_size = 5


def lossFun(inputs, targets, hprev, Wxh, Whh, Why):
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0
    for t in xrange(len(inputs)):
        xs[t] = np.zeros((Wxh.shape[1], 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]))
        ys = np.dot(Why, hs[t])
        ps[t] = np.exp(ys) / np.sum(np.exp(ys))
        loss += -np.log(ps[t][targets[t], 0])
    print "loss", loss
    return loss
