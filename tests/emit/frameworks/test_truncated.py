"""Truncated BPTT in the framework modules: for every built-in and corpus cell, K in {1, 2} and T = 3..5,
the PyTorch and JAX modules' ``loss_and_gradients`` equal the NumPy module's (same derivation, same K)
in float64, the loss and every gradient; the JAX module's custom_vjp gives the same under ``jit(grad)``."""

import functools

import numpy as np
import pytest

from conftest import ALL_CELLS, load_cell
from derive.derivation.pipeline import derive
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
from derive.emit.outputs import module_source
from derive.emit.render import render
from derive.verify.report import RTOL_EXACT, load_module, max_rel_error, random_problem

FAST = ("rnn", "lstm", "corpus/m2o_lstm", "corpus/narx")  # the fast tier: the rest of ALL_CELLS is slow
CELLS = [pytest.param(c, marks=[] if c in FAST else [pytest.mark.slow], id=c.split("/")[-1]) for c in ALL_CELLS]


def framework(name: str):
    """The framework's package, float64 enabled for JAX; the test is skipped where it is not installed."""
    if name == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax
    return pytest.importorskip("torch")


@functools.cache
def modules(cell: str, truncate: int | None, target: str):
    """(the NumPy module, the ``target`` module) of one derivation with truncate = K (None: full BPTT)."""
    d = derive(load_cell(cell), 3, truncate)
    stem = f"{cell.split('/')[-1]}_K{truncate}"
    source = render(TEMPLATES[target], module_context(d, FRAMEWORKS[target], "test"))
    return load_module(module_source(d), f"{stem}_numpy"), load_module(source, f"{stem}_{target}")


def problem(m, steps: int, seed: int = 3):
    return random_problem(m, steps, {d: 3 + i for i, d in enumerate(m.DIMS)}, seed, 2)


def assert_equal(got, want):
    assert set(got[1]) == set(want[1])
    assert max_rel_error(np.asarray(got[0]), want[0]) <= RTOL_EXACT, ("J", float(got[0]), want[0])
    for name, value in want[1].items():
        assert max_rel_error(np.asarray(got[1][name]), value) <= RTOL_EXACT, name


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("truncate", [1, 2], ids=["K1", "K2"])
@pytest.mark.parametrize("cell", CELLS)
def test_truncated_loss_and_gradients_equal_the_numpy_modules(cell, truncate, target):
    framework(target)
    numpy_module, m = modules(cell, truncate, target)
    assert m.TRUNCATE == truncate
    for steps in (3, 4, 5):
        p = problem(numpy_module, steps)
        assert_equal(m.loss_and_gradients(*p), numpy_module.loss_and_gradients(*p))


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("cell", ["lstm", "corpus/m2o_lstm"], ids=["lstm", "m2o_lstm"])
def test_a_truncation_at_or_beyond_t_runs_every_step_back(cell, target):
    """K = 4 at T = 3, 4: the runs stop at step 1 (min(K, T) steps), as the NumPy module's do."""
    framework(target)
    numpy_module, m = modules(cell, 4, target)
    for steps in (3, 4):
        p = problem(numpy_module, steps)
        assert_equal(m.loss_and_gradients(*p), numpy_module.loss_and_gradients(*p))


@pytest.mark.parametrize("cell", ["lstm", "corpus/m2o_lstm"], ids=["lstm", "m2o_lstm"])
def test_the_truncated_gradient_is_not_the_full_one(cell):
    """At T = 5 > K = 2 the runs cut terms: a module that printed full BPTT would fail the test above."""
    framework("torch")
    _, m = modules(cell, 2, "torch")
    _, full = modules(cell, None, "torch")
    p = problem(m, 5)
    got, whole = m.loss_and_gradients(*p)[1], full.loss_and_gradients(*p)[1]
    assert max(max_rel_error(np.asarray(got[k]), np.asarray(whole[k])) for k in m.PARAMS) > 1e-3


@pytest.mark.parametrize("truncate", [1, 3], ids=["K1", "K3"])
@pytest.mark.parametrize("cell", ["lstm", "corpus/m2o_lstm"], ids=["lstm", "m2o_lstm"])
def test_the_truncated_custom_vjp_under_jit_and_grad(cell, truncate):
    """``jit(grad(loss))`` runs the derived truncated backward: the NumPy module's gradients, T = 5."""
    jax = framework("jax")
    numpy_module, m = modules(cell, truncate, "jax")
    params, xs, targets, *initial = problem(numpy_module, 5)
    got = jax.jit(jax.grad(m.loss, argnums=(0, 3)))(params, xs, targets, *initial)
    _, want = numpy_module.loss_and_gradients(params, xs, targets, *initial)
    for name in m.PARAMS:
        assert max_rel_error(np.asarray(got[0][name]), want[name]) <= RTOL_EXACT, name
    assert max_rel_error(np.asarray(got[1]), want[next(iter(m.INITIAL))]) <= RTOL_EXACT


def test_truncated_loss_backward_in_torch_fills_grad_with_the_truncated_gradient():
    """``loss(...).backward()`` (the autograd.Function) runs the truncated backward too."""
    torch = framework("torch")
    numpy_module, m = modules("gru", 2, "torch")
    params, xs, targets, *initial = problem(numpy_module, 5)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    m.loss(leaves, xs, targets, *initial).backward()
    _, want = numpy_module.loss_and_gradients(params, xs, targets, *initial)
    for name in m.PARAMS:
        assert max_rel_error(leaves[name].grad.numpy(), want[name]) <= RTOL_EXACT, name
