"""A recurrent layer in the style of small object-oriented deep-learning libraries (ML-From-Scratch
and its kin), written for bptt check's tests: ``U`` (input), ``W`` (recurrent) and ``V`` (output)
weights without biases, inputs (batch, timesteps, input_dim), the states kept one row longer than
the sequence so that row -1 is the zero initial state, an output V h_t at every step, and the
gradients handed to one optimizer per weight (``U_opt.update(U, grad_U)``) rather than returned.
BPTT is truncated to ``bptt_trunc + 1`` steps, as such layers do.

``RNN`` is right up to its truncation; ``RNNWrongStep`` takes grad_W's outer product with the state
of the step itself, h_k, where h_(k-1) belongs."""

import copy

import numpy as np


class TanH:
    def __call__(self, x):
        return np.tanh(x)

    def gradient(self, x):
        return 1 - np.tanh(x) ** 2


class SGD:
    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate

    def update(self, w, grad_wrt_w):
        return w - self.learning_rate * grad_wrt_w


class Layer:
    def set_input_shape(self, shape):
        self.input_shape = shape

    def layer_name(self):
        return self.__class__.__name__


class RNN(Layer):
    def __init__(self, n_units, bptt_trunc=5, input_shape=None):
        self.input_shape = input_shape
        self.n_units = n_units
        self.activation = TanH()
        self.trainable = True
        self.bptt_trunc = bptt_trunc
        self.W = self.V = self.U = None

    def initialize(self, optimizer):
        timesteps, input_dim = self.input_shape
        bound = 1 / np.sqrt(input_dim)
        self.U = np.random.uniform(-bound, bound, (self.n_units, input_dim))
        bound = 1 / np.sqrt(self.n_units)
        self.V = np.random.uniform(-bound, bound, (input_dim, self.n_units))
        self.W = np.random.uniform(-bound, bound, (self.n_units, self.n_units))
        self.U_opt, self.V_opt, self.W_opt = (copy.copy(optimizer) for _ in range(3))

    def forward_pass(self, X, training=True):
        self.layer_input = X
        batch_size, timesteps, input_dim = X.shape
        self.state_input = np.zeros((batch_size, timesteps, self.n_units))
        self.states = np.zeros((batch_size, timesteps + 1, self.n_units))
        self.outputs = np.zeros((batch_size, timesteps, input_dim))
        for t in range(timesteps):
            self.state_input[:, t] = X[:, t] @ self.U.T + self.states[:, t - 1] @ self.W.T
            self.states[:, t] = self.activation(self.state_input[:, t])
            self.outputs[:, t] = self.states[:, t] @ self.V.T
        return self.outputs

    lag = 1  # grad_W's outer product is with the state `lag` steps back

    def _slope(self, t):
        return self.activation.gradient(self.state_input[:, t])

    def backward_pass(self, accum_grad):
        _, timesteps, _ = accum_grad.shape
        grad_U, grad_V, grad_W = np.zeros_like(self.U), np.zeros_like(self.V), np.zeros_like(self.W)
        accum_grad_next = np.zeros_like(accum_grad)
        for t in reversed(range(timesteps)):
            grad_V += accum_grad[:, t].T @ self.states[:, t]
            grad_state = (accum_grad[:, t] @ self.V) * self._slope(t)
            accum_grad_next[:, t] = grad_state @ self.U
            for k in reversed(np.arange(max(0, t - self.bptt_trunc), t + 1)):
                grad_U += grad_state.T @ self.layer_input[:, k]
                grad_W += grad_state.T @ self.states[:, k - self.lag]
                grad_state = (grad_state @ self.W) * self._slope(k - 1)
        self.U = self.U_opt.update(self.U, grad_U)
        self.V = self.V_opt.update(self.V, grad_V)
        self.W = self.W_opt.update(self.W, grad_W)
        return accum_grad_next

    def output_shape(self):
        return self.input_shape


class RNNWrongStep(RNN):
    lag = 0
