"""Style: the deeplearning.ai Sequence Models course, week 1 ("Building your Recurrent Neural
Network - Step by Step"), as solutions are kept in public repositories: a vanilla RNN and an LSTM
forward and backward, written step by step, with the parameters in a dict and the time axis LAST.

RIGHT:
    rnn_cell_forward(xt, a_prev, parameters) / rnn_cell_backward(da_next, cache)
    rnn_forward(x, a0, parameters) -> a, y_pred, caches
    rnn_backward(da, caches) -> gradients {"dx", "da0", "dWax", "dWaa", "dba"}
    lstm_cell_forward(xt, a_prev, c_prev, parameters) / lstm_cell_backward(da_next, dc_next, cache)
    lstm_forward(x, a0, parameters) -> a, y, c, caches
    lstm_backward(da, caches) -> gradients {"dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc",
                                            "dWo", "dbo"}
WRONG:
    lstm_backward_no_carry(da, caches)   the bug seen in the wild: every step's backward starts from
                                         da[:, :, t] and a zero dc_next; neither da_prev nor dc_prev
                                         is carried to the step before, so nothing flows back in
                                         time (da0 is the first step's da_prev alone).

Conventions: column vectors with the batch in the columns: x (n_x, m, T_x), a (n_a, m, T_x) (time
is the last axis); weights (out, in).  RNN: a<t> = tanh(Waa a<t-1> + Wax x<t> + ba), so Wax = W_xh,
Waa = W_hh, ba = b_h (n_a, 1); y_pred = softmax(Wya a + by).  LSTM: every gate's weight acts on
concat = [a_prev; xt] ((n_a + n_x, m)): Wf, Wi, Wc, Wo are (n_a, n_a + n_x), the first n_a columns
the recurrent weights U_*, the last n_x the input weights W_*; Wc / bc is the candidate g; biases
(n_a, 1).  rnn_forward takes a0; lstm_forward takes a0 and starts from c0 = 0.  The backward passes
take da, the upstream gradient of every a<t> (n_a, m, T_x); the output layer (Wy, by) is not part
of them.

Written from scratch for bptt derive's tests (bptt check on code with no wrapper).
"""

import numpy as np


def softmax(x):
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def initialize_parameters(n_a, n_x, n_y, cell="rnn", seed=1):
    """Small random weights and zero biases for rnn_forward (cell="rnn") or lstm_forward (cell="lstm")."""
    np.random.seed(seed)
    if cell == "rnn":
        return {"Wax": np.random.randn(n_a, n_x) * 0.01, "Waa": np.random.randn(n_a, n_a) * 0.01,
                "Wya": np.random.randn(n_y, n_a) * 0.01, "ba": np.zeros((n_a, 1)), "by": np.zeros((n_y, 1))}
    parameters = {}
    for gate in "fico":
        parameters["W" + gate] = np.random.randn(n_a, n_a + n_x) * 0.01
        parameters["b" + gate] = np.zeros((n_a, 1))
    parameters["Wy"] = np.random.randn(n_y, n_a) * 0.01
    parameters["by"] = np.zeros((n_y, 1))
    return parameters


# GRADED FUNCTION: rnn_cell_forward

def rnn_cell_forward(xt, a_prev, parameters):
    """
    One step of the RNN cell.

    Arguments:
    xt -- the input at step t, numpy array of shape (n_x, m)
    a_prev -- the hidden state at step t-1, numpy array of shape (n_a, m)
    parameters -- python dictionary containing:
                        Wax -- input weights, numpy array of shape (n_a, n_x)
                        Waa -- recurrent weights, numpy array of shape (n_a, n_a)
                        Wya -- output weights, numpy array of shape (n_y, n_a)
                        ba --  bias of the state, numpy array of shape (n_a, 1)
                        by -- bias of the output, numpy array of shape (n_y, 1)
    Returns:
    a_next -- the next hidden state, of shape (n_a, m)
    yt_pred -- the prediction at step t, of shape (n_y, m)
    cache -- tuple (a_next, a_prev, xt, parameters), for the backward pass
    """

    # Retrieve parameters from "parameters"
    Wax = parameters["Wax"]
    Waa = parameters["Waa"]
    Wya = parameters["Wya"]
    ba = parameters["ba"]
    by = parameters["by"]

    ### START CODE HERE ### (≈2 lines)
    # the next state, then the prediction
    a_next = np.tanh(np.dot(Waa, a_prev) + np.dot(Wax, xt) + ba)
    yt_pred = softmax(np.dot(Wya, a_next) + by)
    ### END CODE HERE ###

    cache = (a_next, a_prev, xt, parameters)

    return a_next, yt_pred, cache


# GRADED FUNCTION: rnn_forward

def rnn_forward(x, a0, parameters):
    """
    The RNN over the whole sequence.

    Arguments:
    x -- the inputs of every step, of shape (n_x, m, T_x)
    a0 -- the initial hidden state, of shape (n_a, m)
    parameters -- python dictionary with Waa, Wax, Wya, ba, by (see rnn_cell_forward)

    Returns:
    a -- the hidden state of every step, numpy array of shape (n_a, m, T_x)
    y_pred -- the prediction of every step, numpy array of shape (n_y, m, T_x)
    caches -- tuple (list of the cells' caches, x), for the backward pass
    """

    # the cells' caches
    caches = []

    # shapes, from x and parameters["Wya"]
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wya"].shape

    ### START CODE HERE ###

    # a and y_pred, filled step by step
    a = np.zeros((n_a, m, T_x))
    y_pred = np.zeros((n_y, m, T_x))

    a_next = a0

    # loop over all time-steps
    for t in range(T_x):
        a_next, yt_pred, cache = rnn_cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        y_pred[:, :, t] = yt_pred
        caches.append(cache)

    ### END CODE HERE ###

    caches = (caches, x)

    return a, y_pred, caches


def rnn_cell_backward(da_next, cache):
    """
    The backward pass of one RNN cell.

    Arguments:
    da_next -- gradient of the loss with respect to the next hidden state, of shape (n_a, m)
    cache -- the output of rnn_cell_forward()

    Returns:
    gradients -- python dictionary containing:
                        dxt -- gradient of the input, of shape (n_x, m)
                        da_prev -- gradient of the previous hidden state, of shape (n_a, m)
                        dWax -- gradient of the input weights, of shape (n_a, n_x)
                        dWaa -- gradient of the recurrent weights, of shape (n_a, n_a)
                        dba -- gradient of the bias, of shape (n_a, 1)
    """

    # the values saved in the forward pass
    (a_next, a_prev, xt, parameters) = cache

    Wax = parameters["Wax"]
    Waa = parameters["Waa"]

    ### START CODE HERE ###
    # through the tanh: 1 - tanh(z)^2, and tanh(z) is a_next
    dtanh = (1 - a_next ** 2) * da_next

    # the input and its weights
    dxt = np.dot(Wax.T, dtanh)
    dWax = np.dot(dtanh, xt.T)

    # the previous state and the recurrent weights
    da_prev = np.dot(Waa.T, dtanh)
    dWaa = np.dot(dtanh, a_prev.T)

    # the bias, summed over the batch
    dba = np.sum(dtanh, axis=1, keepdims=True)

    ### END CODE HERE ###

    gradients = {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}

    return gradients


def rnn_backward(da, caches):
    """
    The backward pass of the RNN over the whole sequence.

    Arguments:
    da -- the upstream gradient of every hidden state, of shape (n_a, m, T_x)
    caches -- tuple from rnn_forward

    Returns:
    gradients -- python dictionary containing:
                        dx -- gradient of the inputs, of shape (n_x, m, T_x)
                        da0 -- gradient of the initial hidden state, of shape (n_a, m)
                        dWax -- of shape (n_a, n_x)
                        dWaa -- of shape (n_a, n_a)
                        dba -- of shape (n_a, 1)
    """

    ### START CODE HERE ###

    # the first cell's cache gives the shapes
    (caches, x) = caches
    (a1, a0, x1, parameters) = caches[0]

    n_a, m, T_x = da.shape
    n_x, m = x1.shape

    # zero gradients to add to
    dx = np.zeros((n_x, m, T_x))
    dWax = np.zeros((n_a, n_x))
    dWaa = np.zeros((n_a, n_a))
    dba = np.zeros((n_a, 1))
    da0 = np.zeros((n_a, m))
    da_prevt = np.zeros((n_a, m))

    # backwards through the steps
    for t in reversed(range(T_x)):
        # this step's upstream gradient plus what came back from step t+1
        gradients = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])
        dxt, da_prevt, dWaxt, dWaat, dbat = (gradients["dxt"], gradients["da_prev"], gradients["dWax"],
                                             gradients["dWaa"], gradients["dba"])
        dx[:, :, t] = dxt
        dWax += dWaxt
        dWaa += dWaat
        dba += dbat

    # what reaches the initial state
    da0 = da_prevt
    ### END CODE HERE ###

    gradients = {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}

    return gradients


# GRADED FUNCTION: lstm_cell_forward

def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """
    One step of the LSTM cell.

    Arguments:
    xt -- the input at step t, numpy array of shape (n_x, m)
    a_prev -- the hidden state at step t-1, numpy array of shape (n_a, m)
    c_prev -- the memory (cell) state at step t-1, numpy array of shape (n_a, m)
    parameters -- python dictionary containing:
                        Wf, bf -- the forget gate, shapes (n_a, n_a + n_x) and (n_a, 1)
                        Wi, bi -- the update (input) gate, same shapes
                        Wc, bc -- the candidate value, same shapes
                        Wo, bo -- the output gate, same shapes
                        Wy, by -- the prediction, shapes (n_y, n_a) and (n_y, 1)

    Returns:
    a_next -- the next hidden state, of shape (n_a, m)
    c_next -- the next memory state, of shape (n_a, m)
    yt_pred -- the prediction at step t, of shape (n_y, m)
    cache -- tuple (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)

    Note: ft, it, ot are the forget, update and output gates, cct the candidate (c tilde).
    """

    # Retrieve parameters from "parameters"
    Wf = parameters["Wf"]
    bf = parameters["bf"]
    Wi = parameters["Wi"]
    bi = parameters["bi"]
    Wc = parameters["Wc"]
    bc = parameters["bc"]
    Wo = parameters["Wo"]
    bo = parameters["bo"]
    Wy = parameters["Wy"]
    by = parameters["by"]

    ### START CODE HERE ###
    # a_prev on top of xt
    concat = np.concatenate((a_prev, xt), axis=0)

    # the gates, the candidate, the new memory and the new state
    ft = sigmoid(np.dot(Wf, concat) + bf)
    it = sigmoid(np.dot(Wi, concat) + bi)
    cct = np.tanh(np.dot(Wc, concat) + bc)
    c_next = ft * c_prev + it * cct
    ot = sigmoid(np.dot(Wo, concat) + bo)
    a_next = ot * np.tanh(c_next)

    # the prediction
    yt_pred = softmax(np.dot(Wy, a_next) + by)
    ### END CODE HERE ###

    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)

    return a_next, c_next, yt_pred, cache


# GRADED FUNCTION: lstm_forward

def lstm_forward(x, a0, parameters):
    """
    The LSTM over the whole sequence.

    Arguments:
    x -- the inputs of every step, of shape (n_x, m, T_x)
    a0 -- the initial hidden state, of shape (n_a, m)
    parameters -- python dictionary with Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by (see lstm_cell_forward)

    Returns:
    a -- the hidden states, numpy array of shape (n_a, m, T_x)
    y -- the predictions, numpy array of shape (n_y, m, T_x)
    c -- the memory states, numpy array of shape (n_a, m, T_x)
    caches -- tuple (list of the cells' caches, x), for the backward pass
    """

    caches = []

    Wy = parameters['Wy']
    ### START CODE HERE ###
    n_x, m, T_x = x.shape
    n_y, n_a = Wy.shape

    a = np.zeros((n_a, m, T_x))
    c = np.zeros((n_a, m, T_x))
    y = np.zeros((n_y, m, T_x))

    # the memory starts empty
    a_next = a0
    c_next = np.zeros((n_a, m))

    for t in range(T_x):
        xt = x[:, :, t]
        a_next, c_next, yt, cache = lstm_cell_forward(xt, a_next, c_next, parameters)
        a[:, :, t] = a_next
        c[:, :, t] = c_next
        y[:, :, t] = yt
        caches.append(cache)

    ### END CODE HERE ###

    caches = (caches, x)

    return a, y, c, caches


def lstm_cell_backward(da_next, dc_next, cache):
    """
    The backward pass of one LSTM cell.

    Arguments:
    da_next -- gradient of the next hidden state, of shape (n_a, m)
    dc_next -- gradient of the next memory state, of shape (n_a, m)
    cache -- the output of lstm_cell_forward()

    Returns:
    gradients -- python dictionary containing:
                        dxt -- gradient of the input, of shape (n_x, m)
                        da_prev -- gradient of the previous hidden state, of shape (n_a, m)
                        dc_prev -- gradient of the previous memory state, of shape (n_a, m)
                        dWf, dWi, dWc, dWo -- gradients of the weights, of shape (n_a, n_a + n_x)
                        dbf, dbi, dbc, dbo -- gradients of the biases, of shape (n_a, 1)
    """

    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache

    n_x, m = xt.shape
    n_a, m = a_next.shape

    ### START CODE HERE ###
    # the memory's gradient: what came from step t+1 plus what came through a_next = ot * tanh(c_next)
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1 - tanh_c ** 2)

    # the gates' gradients, before their nonlinearities
    dot = da_next * tanh_c * ot * (1 - ot)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    dft = dc * c_prev * ft * (1 - ft)

    # the weights see concat = [a_prev; xt]
    concat = np.concatenate((a_prev, xt), axis=0)
    dWf = np.dot(dft, concat.T)
    dWi = np.dot(dit, concat.T)
    dWc = np.dot(dcct, concat.T)
    dWo = np.dot(dot, concat.T)
    dbf = np.sum(dft, axis=1, keepdims=True)
    dbi = np.sum(dit, axis=1, keepdims=True)
    dbc = np.sum(dcct, axis=1, keepdims=True)
    dbo = np.sum(dot, axis=1, keepdims=True)

    # the previous states and the input: the first n_a columns act on a_prev, the rest on xt
    da_prev = (np.dot(parameters['Wf'][:, :n_a].T, dft) + np.dot(parameters['Wi'][:, :n_a].T, dit)
               + np.dot(parameters['Wc'][:, :n_a].T, dcct) + np.dot(parameters['Wo'][:, :n_a].T, dot))
    dc_prev = dc * ft
    dxt = (np.dot(parameters['Wf'][:, n_a:].T, dft) + np.dot(parameters['Wi'][:, n_a:].T, dit)
           + np.dot(parameters['Wc'][:, n_a:].T, dcct) + np.dot(parameters['Wo'][:, n_a:].T, dot))
    ### END CODE HERE ###

    gradients = {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev, "dWf": dWf, "dbf": dbf, "dWi": dWi,
                 "dbi": dbi, "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}

    return gradients


def lstm_backward(da, caches):
    """
    The backward pass of the LSTM over the whole sequence.

    Arguments:
    da -- the upstream gradient of every hidden state, of shape (n_a, m, T_x)
    caches -- tuple from lstm_forward

    Returns:
    gradients -- python dictionary containing:
                        dx -- gradient of the inputs, of shape (n_x, m, T_x)
                        da0 -- gradient of the initial hidden state, of shape (n_a, m)
                        dWf, dWi, dWc, dWo -- of shape (n_a, n_a + n_x)
                        dbf, dbi, dbc, dbo -- of shape (n_a, 1)
    """

    (caches, x) = caches
    (a1, c1, a0, c0, f1, i1, cc1, o1, x1, parameters) = caches[0]

    ### START CODE HERE ###
    n_a, m, T_x = da.shape
    n_x, m = x1.shape

    dx = np.zeros((n_x, m, T_x))
    da0 = np.zeros((n_a, m))
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    dWf = np.zeros((n_a, n_a + n_x))
    dWi = np.zeros((n_a, n_a + n_x))
    dWc = np.zeros((n_a, n_a + n_x))
    dWo = np.zeros((n_a, n_a + n_x))
    dbf = np.zeros((n_a, 1))
    dbi = np.zeros((n_a, 1))
    dbc = np.zeros((n_a, 1))
    dbo = np.zeros((n_a, 1))

    for t in reversed(range(T_x)):
        # both states' gradients are carried from step t+1
        gradients = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])
        da_prevt = gradients["da_prev"]
        dc_prevt = gradients["dc_prev"]
        dx[:, :, t] = gradients["dxt"]
        dWf += gradients["dWf"]
        dWi += gradients["dWi"]
        dWc += gradients["dWc"]
        dWo += gradients["dWo"]
        dbf += gradients["dbf"]
        dbi += gradients["dbi"]
        dbc += gradients["dbc"]
        dbo += gradients["dbo"]
    da0 = da_prevt
    ### END CODE HERE ###

    gradients = {"dx": dx, "da0": da0, "dWf": dWf, "dbf": dbf, "dWi": dWi, "dbi": dbi,
                 "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}

    return gradients


def lstm_backward_no_carry(da, caches):
    """lstm_backward as it is often submitted: each step is given da[:, :, t] and a zero dc_next, and
    the da_prev and dc_prev it returns are never fed to the step before."""

    (caches, x) = caches
    (a1, c1, a0, c0, f1, i1, cc1, o1, x1, parameters) = caches[0]

    n_a, m, T_x = da.shape
    n_x, m = x1.shape

    dx = np.zeros((n_x, m, T_x))
    da0 = np.zeros((n_a, m))
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    dWf = np.zeros((n_a, n_a + n_x))
    dWi = np.zeros((n_a, n_a + n_x))
    dWc = np.zeros((n_a, n_a + n_x))
    dWo = np.zeros((n_a, n_a + n_x))
    dbf = np.zeros((n_a, 1))
    dbi = np.zeros((n_a, 1))
    dbc = np.zeros((n_a, 1))
    dbo = np.zeros((n_a, 1))

    for t in reversed(range(T_x)):
        gradients = lstm_cell_backward(da[:, :, t], np.zeros((n_a, m)), caches[t])
        da_prevt = gradients["da_prev"]
        dc_prevt = gradients["dc_prev"]
        dx[:, :, t] = gradients["dxt"]
        dWf += gradients["dWf"]
        dWi += gradients["dWi"]
        dWc += gradients["dWc"]
        dWo += gradients["dWo"]
        dbf += gradients["dbf"]
        dbi += gradients["dbi"]
        dbc += gradients["dbc"]
        dbo += gradients["dbo"]
    da0 = da_prevt

    gradients = {"dx": dx, "da0": da0, "dWf": dWf, "dbf": dbf, "dWi": dWi, "dbi": dbi,
                 "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}

    return gradients
