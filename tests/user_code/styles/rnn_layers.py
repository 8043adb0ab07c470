"""Style: Stanford cs231n assignment 3, rnn_layers.py: step and sequence layers for vanilla RNNs
and LSTMs, each a forward returning (out, cache) and a backward taking the upstream gradient and
the cache, plus the word embedding, the temporal affine layer and the temporal softmax loss.

RIGHT:
    rnn_step_forward / rnn_step_backward, rnn_forward / rnn_backward
    lstm_step_forward / lstm_step_backward, lstm_forward / lstm_backward
    word_embedding_forward / word_embedding_backward
    temporal_affine_forward / temporal_affine_backward
    temporal_softmax_loss (its dx)
WRONG:
    rnn_backward_no_carry(dh, cache)         each step gets only dh[:, t]: the dprev_h coming back
                                             from step t+1 is dropped (no recurrence in the
                                             backward); dh0 is step 0's dprev_h alone.
    lstm_backward_no_cell_carry(dh, cache)   carries dprev_h from step to step but not dprev_c:
                                             each step's backward starts from dnext_c = 0, so the
                                             gradient along the cell state (f * c[t-1]) is lost.

Conventions: minibatch first, x (N, T, D), h (N, T, H); row vectors and (in, out) weights,
Wx (D, H), Wh (H, H), b (H,): next_h = tanh(x Wx + prev_h Wh + b), so Wx is W_xh transposed.
The LSTM packs its gates in Wx (D, 4H), Wh (H, 4H), b (4H,), order i, f, o, g.  rnn_forward takes h0;
lstm_forward takes h0 and starts from c0 = 0 inside.  The backward passes take dh (N, T, H), the
upstream gradient of every h_t, and return (dx, dh0, dWx, dWh, db).  temporal_softmax_loss sums over
the time steps (masked) and averages over the N sequences.

Written from scratch for bptt derive's tests (bptt check on code with no wrapper).
"""

import numpy as np

"""
Layers for recurrent networks: step functions, whole-sequence functions, and the
embedding / affine / loss layers a captioning model puts around them.
"""


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """
    Advance a tanh RNN by one step, for a minibatch of N inputs.

    Inputs:
    - x: this step's inputs, shape (N, D)
    - prev_h: the state before the step, shape (N, H)
    - Wx: input weights, shape (D, H)
    - Wh: recurrent weights, shape (H, H)
    - b: bias, shape (H,)

    Returns a tuple of:
    - next_h: the state after the step, shape (N, H)
    - cache: what rnn_step_backward needs
    """
    next_h, cache = None, None
    ##############################################################################
    # TODO: one step forward; keep what the backward step needs in cache.        #
    ##############################################################################
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """
    Gradients of one tanh RNN step.

    Inputs:
    - dnext_h: d loss / d next_h, shape (N, H)
    - cache: from rnn_step_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dprev_h: shape (N, H)
    - dWx: shape (D, H)
    - dWh: shape (H, H)
    - db: shape (H,)
    """
    dx, dprev_h, dWx, dWh, db = None, None, None, None, None
    ##############################################################################
    # TODO: one step backward. tanh'(z) = 1 - tanh(z)^2, and tanh(z) is next_h.  #
    ##############################################################################
    x, prev_h, Wx, Wh, next_h = cache
    dz = dnext_h * (1 - next_h ** 2)
    dx = dz.dot(Wx.T)
    dprev_h = dz.dot(Wh.T)
    dWx = x.T.dot(dz)
    dWh = prev_h.T.dot(dz)
    db = np.sum(dz, axis=0)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """
    The tanh RNN over whole sequences: N sequences of T inputs of size D each,
    a state of size H, every step's state returned.

    Inputs:
    - x: the inputs, shape (N, T, D)
    - h0: the state before the first step, shape (N, H)
    - Wx: input weights, shape (D, H)
    - Wh: recurrent weights, shape (H, H)
    - b: bias, shape (H,)

    Returns a tuple of:
    - h: the states after each step, shape (N, T, H)
    - cache: the step caches, for rnn_backward
    """
    h, cache = None, None
    ##############################################################################
    # TODO: loop over time with rnn_step_forward.                                #
    ##############################################################################
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=x.dtype)
    cache = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(step_cache)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return h, cache


def rnn_backward(dh, cache):
    """
    Gradients of rnn_forward.

    Inputs:
    - dh: d loss / d h[:, t] for every t, shape (N, T, H): only what each step's
      own output receives from above. What flows from step t+1 back into step t
      is for this function to add.
    - cache: from rnn_forward

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dh0: shape (N, H)
    - dWx: shape (D, H)
    - dWh: shape (H, H)
    - db: shape (H,)
    """
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    ##############################################################################
    # TODO: loop backwards over time with rnn_step_backward.                     #
    ##############################################################################
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, H))
    dWh = np.zeros((H, H))
    db = np.zeros(H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return dx, dh0, dWx, dWh, db


def rnn_backward_transposed(dh, cache):
    """rnn_backward returning dWx the other way round, (H, D) where Wx is (D, H)."""
    dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
    return dx, dh0, dWx.T, dWh, db


def rnn_backward_no_carry(dh, cache):
    """rnn_backward as first written: the gradient arriving from step t+1 is computed but never
    added to the next step's upstream gradient."""
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, H))
    dWh = np.zeros((H, H))
    db = np.zeros(H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :], cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db


def word_embedding_forward(x, W):
    """
    Look the words up: N sequences of T word indices from a vocabulary of V,
    each word a vector of size D.

    Inputs:
    - x: integer word indices, shape (N, T), each in [0, V)
    - W: the word vectors, one per row, shape (V, D)

    Returns a tuple of:
    - out: shape (N, T, D)
    - cache: for word_embedding_backward
    """
    out = W[x, :]
    cache = (x, W)
    return out, cache


def word_embedding_backward(dout, cache):
    """
    Gradient of the lookup with respect to the word vectors (the indices have none).

    Inputs:
    - dout: shape (N, T, D)
    - cache: from word_embedding_forward

    Returns:
    - dW: shape (V, D)
    """
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)  # repeated words must add up, which dW[x] += dout would not do
    return dW


def sigmoid(x):
    """
    Logistic sigmoid that never exponentiates a large positive number.
    """
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """
    One LSTM step for a minibatch of N, inputs of size D, state of size H.

    Inputs:
    - x: shape (N, D)
    - prev_h: the hidden state before the step, shape (N, H)
    - prev_c: the cell state before the step, shape (N, H)
    - Wx: input weights of the four gates side by side, shape (D, 4H)
    - Wh: recurrent weights of the four gates, shape (H, 4H)
    - b: biases of the four gates, shape (4H,)

    Returns a tuple of:
    - next_h: shape (N, H)
    - next_c: shape (N, H)
    - cache: for lstm_step_backward
    """
    next_h, next_c, cache = None, None, None
    #############################################################################
    # TODO: one LSTM step; gates in the order i, f, o, g.                       #
    #############################################################################
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b  # (N, 4H) activations
    i = sigmoid(a[:, 0:H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:4 * H])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """
    Gradients of one LSTM step.

    Inputs:
    - dnext_h: d loss / d next_h, shape (N, H)
    - dnext_c: d loss / d next_c, shape (N, H)
    - cache: from lstm_step_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dprev_h: shape (N, H)
    - dprev_c: shape (N, H)
    - dWx: shape (D, 4H)
    - dWh: shape (H, 4H)
    - db: shape (4H,)
    """
    dx, dprev_h, dprev_c, dWx, dWh, db = None, None, None, None, None, None
    #############################################################################
    # TODO: one LSTM step backward. sigmoid' = s(1 - s), tanh' = 1 - t^2, both  #
    # from the values saved in the cache.                                       #
    #############################################################################
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    # next_h = o * tanh(next_c): both the cell's own gradient and the one through h reach next_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    do = dnext_h * tanh_c
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    # through the gate nonlinearities
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)))
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """
    The LSTM over whole sequences: N sequences of T inputs of size D, states of
    size H; every step's hidden state is returned.

    Only h0 is an argument: the cell state starts from zero, and the cell states
    stay inside (they are not returned).

    Inputs:
    - x: shape (N, T, D)
    - h0: the hidden state before the first step, shape (N, H)
    - Wx: shape (D, 4H)
    - Wh: shape (H, 4H)
    - b: shape (4H,)

    Returns a tuple of:
    - h: shape (N, T, H)
    - cache: the step caches, for lstm_backward
    """
    h, cache = None, None
    #############################################################################
    # TODO: loop over time with lstm_step_forward.                              #
    #############################################################################
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=x.dtype)
    prev_h = h0
    prev_c = np.zeros_like(h0)
    cache = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(step_cache)
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return h, cache


def lstm_backward(dh, cache):
    """
    Gradients of lstm_forward.

    Inputs:
    - dh: d loss / d h[:, t] from above, for every t, shape (N, T, H)
    - cache: from lstm_forward

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dh0: shape (N, H)
    - dWx: shape (D, 4H)
    - dWh: shape (H, 4H)
    - db: shape (4H,)
    """
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    #############################################################################
    # TODO: loop backwards over time with lstm_step_backward, carrying both     #
    # dprev_h and dprev_c.                                                      #
    #############################################################################
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, 4 * H))
    dWh = np.zeros((H, 4 * H))
    db = np.zeros(4 * H)
    dprev_h = np.zeros((N, H))
    dprev_c = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    ##############################################################################
    #                               END OF YOUR CODE                             #
    ##############################################################################
    return dx, dh0, dWx, dWh, db


def lstm_backward_no_cell_carry(dh, cache):
    """lstm_backward with the cell state's gradient dropped between steps: dprev_h is carried,
    but every step starts again from dnext_c = 0."""
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, 4 * H))
    dWh = np.zeros((H, 4 * H))
    db = np.zeros(4 * H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dnext_c = np.zeros((N, H))
        dx[:, t, :], dprev_h, _, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t, :] + dprev_h, dnext_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    """
    The same affine map applied at every step of every sequence.

    Inputs:
    - x: shape (N, T, D)
    - w: shape (D, M)
    - b: shape (M,)

    Returns a tuple of:
    - out: shape (N, T, M)
    - cache: for temporal_affine_backward
    """
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    cache = x, w, b, out
    return out, cache


def temporal_affine_backward(dout, cache):
    """
    Gradients of temporal_affine_forward.

    Inputs:
    - dout: shape (N, T, M)
    - cache: from the forward pass

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dw: shape (D, M)
    - db: shape (M,)
    """
    x, w, b, out = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """
    Softmax cross-entropy at every step: scores over a vocabulary of V for N
    sequences of T steps. The loss is summed over the steps and averaged over
    the N sequences. Steps whose mask is False (padding after a short sequence)
    count for nothing.

    Inputs:
    - x: scores, shape (N, T, V)
    - y: the right word at each step, shape (N, T), each in [0, V)
    - mask: booleans, shape (N, T): which steps count

    Returns a tuple of:
    - loss: a scalar
    - dx: d loss / d x, shape (N, T, V)
    """
    N, T, V = x.shape

    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)

    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]

    if verbose:
        print("dx_flat: ", dx_flat.shape)

    dx = dx_flat.reshape(N, T, V)

    return loss, dx
