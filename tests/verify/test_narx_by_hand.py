"""Reading further back (h[t-2], x[t-1]) means what the spec says: the generated module against a
NARX loop written here by hand, where h_{-1} and x_0 are zeros, not through the delay states.

The other yardsticks (finite differences, SymPy) run on the cell the spec becomes, delay states
and all; this one does not, so a delay line that held the wrong step would fail here."""

import functools

import numpy as np
import pytest

from conftest import CORPUS, fd_grad
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.spec.parser import read
from derive.verify.report import TOLERANCE, load_module

SIZES = {"n_x": 3, "n_h": 4, "n_y": 5}


@functools.cache
def narx(steps: int = 3):
    return load_module(module_source(derive(read(CORPUS / "narx.cell"), steps)), f"narx_T{steps}")


def by_hand(params, xs, labels, h0):
    """h_t = tanh(W x_t + Wp x_{t-1} + U h_{t-1} + U2 h_{t-2} + b), x_0 = 0, h_{-1} = 0; J = sum_t -log p_t[l_t]."""
    W, Wp, U, U2, b, V = (params[k] for k in ("W", "Wp", "U", "U2", "b", "V"))
    x_prev, h_prev2, h_prev = np.zeros(W.shape[1]), np.zeros_like(h0), h0
    loss = 0.0
    for x, label in zip(xs, labels):
        h = np.tanh(W @ x + Wp @ x_prev + U @ h_prev + U2 @ h_prev2 + b)
        y = V @ h
        loss += np.log(np.exp(y - y.max()).sum()) + y.max() - y[label]
        x_prev, h_prev2, h_prev = x, h_prev, h
    return loss


def problem(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = narx().init_params(*SIZES.values(), seed=seed)
    xs = rng.standard_normal((steps, SIZES["n_x"]))
    labels = rng.integers(0, SIZES["n_y"], steps)
    h0 = 0.5 * rng.standard_normal(SIZES["n_h"])
    return params, xs, labels, h0


def relative(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def test_the_module_takes_and_differentiates_h0_only():
    module = narx()
    assert module.INITIAL == {"h0": "n_h"}
    loss, grads = module.loss_and_gradients(*problem(2))
    assert set(grads) == {"W", "Wp", "U", "U2", "b", "V", "h0"}


@pytest.mark.parametrize("steps", [1, 2, 3, 7], ids=lambda T: f"T{T}")
def test_fast_path_is_the_narx_written_by_hand(steps):
    """T = 1: h_1 reads h_{-1} = 0 and x_0 = 0; T = 2: h_2 reads h_0 through the delay (its
    gradient has two parts); T = 7: any T, past the derived one."""
    params, xs, labels, h0 = problem(steps)
    loss, grads = narx().loss_and_gradients(params, xs, labels, h0)
    assert relative(np.array(loss), np.array(by_hand(params, xs, labels, h0))) <= TOLERANCE["reference"]
    for name, value in [*params.items(), ("h0", h0)]:
        expected = fd_grad(lambda: by_hand(params, xs, labels, h0), value)
        assert relative(grads[name], expected) <= TOLERANCE["finite differences"], name


@pytest.mark.parametrize("steps", [1, 2, 3], ids=lambda T: f"T{T}")
def test_by_definition_path_is_the_narx_written_by_hand(steps):
    module = load_module(module_source(derive(read(CORPUS / "narx.cell"), steps)), f"narx_def_T{steps}")
    params, xs, labels, h0 = problem(steps, seed=1)
    loss, grads = module.gradients_by_definition(params, xs, labels, h0)
    assert relative(np.array(loss), np.array(by_hand(params, xs, labels, h0))) <= TOLERANCE["reference"]
    expected = fd_grad(lambda: by_hand(params, xs, labels, h0), h0)
    assert relative(grads["h0"], expected) <= TOLERANCE["finite differences"]
    expected = fd_grad(lambda: by_hand(params, xs, labels, h0), params["U2"])
    assert relative(grads["U2"], expected) <= TOLERANCE["finite differences"]


def test_the_delay_states_start_at_zeros_in_every_call():
    """The work arrays are kept between calls of one shape: step 0 of a delay is zeroed each time."""
    module = narx()
    params, xs, labels, h0 = problem(4)
    first = module.loss(params, xs, labels, h0)
    module.loss(params, xs + 1.0, labels, h0 + 1.0)  # the same shape: the same work arrays, other values
    assert module.loss(params, xs, labels, h0) == first
