"""Plain PyTorch autograd of the custom cells, written as people write them: a Python loop over t,
each gate its own products, the loss summed step by step; ``loss.backward()`` differentiates it op
by op.  The peer the emitted module's derived backward is measured against, beside the emitted
module's own ``autograd_loss`` (its hoisted forward under autograd).

A step is ``step(P, x_t, states) -> states`` with ``states`` a tuple whose first entry is h_t;
``P`` holds the parameters by the cell's names.  The output layer and loss are the cells':
y_t = W_y h_t (+ b_y), J = sum_t cross_entropy(softmax(y_t), label_t), summed over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

from derive.tools.bench.problem import Call, Problem

Step = Callable[[dict, object, tuple], tuple]


def indrnn_step(P, x, states):
    """h_t = tanh(W x_t + u ⊙ h_{t-1} + b) (tests/cells/indrnn.cell)."""
    import torch

    (h,) = states
    return (torch.tanh(x @ P["W"].T + P["u"] * h + P["b"]),)


def peephole_step(P, x, states):
    """The peephole LSTM (peephole_lstm.cell): i and f see c_{t-1}, o sees c_t."""
    import torch

    h, c = states
    f = torch.sigmoid(x @ P["W_f"].T + h @ P["U_f"].T + P["p_f"] * c + P["b_f"])
    i = torch.sigmoid(x @ P["W_i"].T + h @ P["U_i"].T + P["p_i"] * c + P["b_i"])
    g = torch.tanh(x @ P["W_g"].T + h @ P["U_g"].T + P["b_g"])
    c = f * c + i * g
    o = torch.sigmoid(x @ P["W_o"].T + h @ P["U_o"].T + P["p_o"] * c + P["b_o"])
    return o * torch.tanh(c), c


def mgu_step(P, x, states):
    """The minimal gated unit (mgu.cell): f_t resets the state n_t reads and mixes h_{t-1} with n_t."""
    import torch

    (h,) = states
    f = torch.sigmoid(x @ P["W_f"].T + h @ P["U_f"].T + P["b_f"])
    n = torch.tanh(x @ P["W_n"].T + (f * h) @ P["U_n"].T + P["b_n"])
    return ((1 - f) * h + f * n,)


# the output layer's parameters of each cell: (weight, bias or None)
OUTPUT = {"indrnn": ("V", None), "peephole-lstm": ("W_y", "b_y"), "mgu": ("W_y", "b_y")}
STEPS: dict[str, Step] = {"indrnn": indrnn_step, "peephole-lstm": peephole_step, "mgu": mgu_step}


def plain_autograd(model: str) -> Callable[[Problem], Call]:
    """The maker of ``model``'s per-step loop under autograd."""
    step, (weight, bias) = STEPS[model], OUTPUT[model]

    def make(p: Problem) -> Call:
        import torch

        F = torch.nn.functional
        P = {k: torch.tensor(v, requires_grad=True) for k, v in p.params.items()}
        init = {k: torch.tensor(v, requires_grad=True) for k, v in p.initial.items()}
        xs, labels = torch.from_numpy(p.xs), torch.from_numpy(p.labels)
        leaves = [*P.values(), *init.values()]

        def call():
            for leaf in leaves:
                leaf.grad = None
            states, loss = tuple(init.values()), 0
            for t in range(xs.shape[0]):
                states = step(P, xs[t], states)
                y = F.linear(states[0], P[weight], None if bias is None else P[bias])
                loss = loss + F.cross_entropy(y, labels[t], reduction="sum")
            loss.backward()
            grads = {k: v.grad.numpy() for k, v in P.items()} | {k: v.grad.numpy() for k, v in init.items()}
            return float(loss.detach()), grads

        return call

    return make
