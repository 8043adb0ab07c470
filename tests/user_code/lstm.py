"""An LSTM with the generic signature and two initial states: fn(params, xs, labels, h0, c0).
The project's hand-written reference loop stands in for the user's code; ``lstm_half`` halves
its gradients (as a stray 1/2 in a loss would)."""

from derive.verify.oracles.lstm import reference_lstm


def lstm(params, xs, labels, h0, c0):
    return reference_lstm(params, xs, labels, h0, c0)


def lstm_half(params, xs, labels, h0, c0):
    loss, grads = reference_lstm(params, xs, labels, h0, c0)
    return loss, {name: 0.5 * g for name, g in grads.items()}
