"""Both generated implementations against three independent yardsticks, per T and per parameter.

Tolerances: float64 rounding only against the reference loop and SymPy
(RTOL_EXACT), truncation and cancellation against central differences (RTOL_FD).
"""

import functools

import pytest

from conftest import generated
from derive.ir.cell import seed_rnn
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import (
    FD_SCALE_FLOOR,
    NUMERIC_SIZES,
    RTOL_EXACT,
    RTOL_FD,
    SYMPY_SIZES,
    finite_differences,
    max_rel_error,
    random_problem,
    sympy_gradients,
)

STEPS = range(1, 7)
WRT = ("W_xh", "W_hh", "W_hy", "h0")
IMPLEMENTATIONS = ("loss_and_gradients", "gradients_by_definition")
CASES = [pytest.param(T, w, marks=pytest.mark.slow if T > 3 else ()) for T in STEPS for w in WRT]  # T <= 3: fast tier
IDS = [f"rnn-T{T}-{w}" for T in STEPS for w in WRT]


@functools.cache
def numeric_problem(T):
    return random_problem(generated(T), T, NUMERIC_SIZES, batch=NUMERIC_SIZES[3])


@functools.cache
def tiny_problem(T):
    return random_problem(generated(T), T, SYMPY_SIZES)


@functools.cache
def reference(T):
    return reference_loss_and_gradients(*numeric_problem(T))


@functools.cache
def fd(T):
    return finite_differences(generated(T).loss, *numeric_problem(T))


@functools.cache
def exact(T):
    return sympy_gradients(seed_rnn(), *tiny_problem(T))


@functools.cache
def result(T, impl, problem):
    args = numeric_problem(T) if problem == "numeric" else tiny_problem(T)
    return getattr(generated(T), impl)(*args)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("T, wrt", CASES, ids=IDS)
def test_against_reference_loop(T, wrt, impl):
    loss, grads = result(T, impl, "numeric")
    ref_loss, ref_grads = reference(T)
    assert max_rel_error(loss, ref_loss) <= RTOL_EXACT
    assert max_rel_error(grads[wrt], ref_grads[wrt]) <= RTOL_EXACT


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("T, wrt", CASES, ids=IDS)
def test_against_finite_differences(T, wrt, impl):
    _, grads = result(T, impl, "numeric")
    assert max_rel_error(grads[wrt], fd(T)[wrt], FD_SCALE_FLOOR) <= RTOL_FD


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("T, wrt", CASES, ids=IDS)
def test_against_exact_sympy_diff(T, wrt, impl):
    loss, grads = result(T, impl, "tiny")
    exact_loss, exact_grads = exact(T)
    assert max_rel_error(loss, exact_loss) <= RTOL_EXACT
    assert max_rel_error(grads[wrt], exact_grads[wrt]) <= RTOL_EXACT


def test_the_yardsticks_see_a_wrong_gradient():
    """A gradient missing its recurrent terms is far outside the tolerances of two yardsticks."""
    T = 4
    ref_loss, ref_grads = reference(T)
    params, xs, labels, h0 = numeric_problem(T)
    truncated = reference_loss_and_gradients(params, xs, labels, h0, truncate=1)[1]["W_hh"]
    assert max_rel_error(truncated, ref_grads["W_hh"]) > 1e-3
    assert max_rel_error(truncated, fd(T)["W_hh"], FD_SCALE_FLOOR) > 1e-3


def test_fast_path_works_beyond_the_derived_T():
    """The fast path is for any T: a module derived at T = 3 handles T = 40 like the reference."""
    module = generated(3)
    params, xs, labels, h0 = random_problem(module, 40, NUMERIC_SIZES, batch=3)
    loss, grads = module.loss_and_gradients(params, xs, labels, h0)
    ref_loss, ref_grads = reference_loss_and_gradients(params, xs, labels, h0)
    assert max_rel_error(loss, ref_loss) <= RTOL_EXACT
    for w in WRT:
        assert max_rel_error(grads[w], ref_grads[w]) <= RTOL_EXACT
