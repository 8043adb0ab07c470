"""torch.compile over the emitted torch module (the built-in lstm): the derived autograd.Function
traces whole, and the compiled loss and gradients are the eager ones in float64."""

from __future__ import annotations

import sys

import pytest

from derive import derive, load_builtin
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
from derive.emit.render import render
from derive.verify.report import RTOL_EXACT, load_module, max_rel_error

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # inductor compiles C++ with gcc: ~30 s

N_X, N_H, N_Y, T, B = 3, 4, 5, 4, 2


@pytest.fixture(scope="module")
def lstm():
    """The module, in sys.modules as an import puts it: dynamo finds a traced function's globals
    through its module's name (without the entry, tracing Loss from outside the module fails)."""
    context = module_context(derive(load_builtin("lstm"), 3), FRAMEWORKS["torch"], "tests")
    module = load_module(render(TEMPLATES["torch"], context), "lstm_torch_compiled")
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def _batch():
    g = torch.Generator().manual_seed(2)
    return torch.randn(T, B, N_X, generator=g, dtype=torch.float64), torch.randint(N_Y, (T, B), generator=g)


def _loss_and_grads(model, call):
    model.zero_grad()
    value = call(*_batch())
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def _assert_same(got, want):
    (loss, grads), (want_loss, want_grads) = got, want
    assert max_rel_error(loss.numpy(), want_loss.numpy()) <= RTOL_EXACT
    assert set(grads) == set(want_grads)
    for name in want_grads:
        assert max_rel_error(grads[name].numpy(), want_grads[name].numpy()) <= RTOL_EXACT, name


def test_compiled_model_equals_eager(lstm):
    """The user's path: ``torch.compile(model)``, as one graph (``fullgraph``: the argument checks
    break none), the derived backward inside it."""
    torch._dynamo.reset()
    model = lstm.CellModel(N_X, N_H, N_Y, seed=0, dtype=torch.float64)
    eager = _loss_and_grads(model, model)
    _assert_same(_loss_and_grads(model, torch.compile(model, fullgraph=True)), eager)


def test_function_compiles_as_one_graph(lstm):
    """``Loss`` on the rows it documents, under ``fullgraph=True``: any graph break in its forward or
    in the derived backward would raise."""
    torch._dynamo.reset()
    model = lstm.CellModel(N_X, N_H, N_Y, seed=0, dtype=torch.float64)
    weights = [getattr(model, name) for name in lstm.PARAMS]

    def through_function(xs, labels):
        initial = [xs.new_zeros(B, N_H) for _ in lstm.INITIAL]
        return lstm.Loss.apply(xs.reshape(T * B, N_X), labels.reshape(-1), *initial, *weights)

    eager = _loss_and_grads(model, model)
    _assert_same(_loss_and_grads(model, torch.compile(through_function, fullgraph=True)), eager)
