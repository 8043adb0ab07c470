"""The numeric evaluator (derive.verify.evaluator), the gradient flow back in time
(derive.tools.flow: stepper, flow) and its PNG (plot)."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import sympy as sp

from conftest import CORPUS, PNG_SIGNATURE, png_size
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.emit.render import MARK
from derive.ir import naming
from derive.ir.cell import Cell, builtin_names, load_builtin, recurrent_params
from derive.spec.parser import parse, read
from derive.tools.flow import flow
from derive.tools.flow import plot as flow_plot
from derive.tools.flow import stepper as flow_stepper
from derive.verify import evaluator
from derive.verify.report import load_module, max_rel_error

SMALL = {"x": 3, "h": 5, "y": 4}  # every dimension its own size
LOSS_RTOL = 1e-12  # the evaluator's loss against the generated module's: float64 rounding only
# g_0 = dJ_T/ds_0 (complex-step Jacobians, exact to rounding) against the generated module's exact
# gradient, taken as dJ/dh_0 of T steps minus that of T - 1 steps (measured: <= 5e-15 for T <= 5; at
# T = 30 the subtraction cancels the digits of the earlier losses' larger share, ~1e-9, so the long
# case is a many-to-one cell, which needs no subtraction: 1e-15)
CHAIN_RTOL = 1e-12
CHAIN_FLOOR = 1e-8  # max_rel_error's floor: the scale below which an error counts as absolute
SAME_RTOL = 1e-12  # two computations of one quantity in float64
SUBMULT_RTOL = 1e-12  # ||A B|| <= ||A|| ||B||, up to the rounding of the SVDs
FD_RTOL = 1e-7  # the complex-step Jacobian against central differences of the step map
FD_EPS = 1e-6


def cell_named(name: str) -> Cell:
    return load_builtin(name) if name in builtin_names() else read(CORPUS / f"{name}.cell")


@functools.cache
def module(name: str):
    """The generated module of a cell; its fast path takes any T."""
    return load_module(module_source(derive(cell_named(name), 1)), f"{name}_flow")


def module_args(mod, problem: flow_stepper.Problem, steps: int | None = None) -> tuple[tuple, dict]:
    """(xs, labels) and the initial states as the module takes them, for the first ``steps`` steps:
    one input (target) as its array, several as a dict by name."""
    steps = problem.steps if steps is None else steps
    xs = {name: value[:steps] for name, value in problem.inputs.items()}
    targets = {name: value[:steps] if mod.LOSS_AT == "every" else value for name, value in problem.targets.items()}
    initial = {naming.initial_arg(name): value for name, value in problem.initial.items()}
    assert tuple(initial) == tuple(mod.INITIAL)
    return (_one_or_dict(xs), _one_or_dict(targets)), initial


def _one_or_dict(arrays: dict) -> object:
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def with_random_initial(problem: flow_stepper.Problem, seed: int) -> flow_stepper.Problem:
    rng = np.random.default_rng(seed)
    initial = {name: 0.5 * rng.standard_normal(len(v)) for name, v in problem.initial.items()}
    return dataclasses.replace(problem, initial=initial)


# ---- the evaluator and the problem --------------------------------------------------------


@pytest.mark.parametrize("name", ["rnn", "elman", "gru", "lstm"])
@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_forward_loss_equals_the_generated_module(name, steps):
    cell, mod = load_builtin(name), module(name)
    problem = with_random_initial(flow_stepper.make_problem(cell, steps, seed=steps, sizes=SMALL), seed=steps)
    args, initial = module_args(mod, problem)
    expected, _ = mod.loss_and_gradients(problem.params, *args, **initial)
    got = flow_stepper.forward(cell, problem)
    assert sorted(got.losses) == list(range(1, steps + 1))
    assert got.states.shape == (steps + 1, sum(problem.sizes[s.dim] for s in cell.states))
    assert abs(got.loss - expected) <= LOSS_RTOL * abs(expected)


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "m2o_lstm", "two_states"])
def test_init_params_follow_the_module_convention(name):
    cell, mod = cell_named(name), module(name)
    sizes = flow_stepper.problem_sizes(cell)
    ours = flow_stepper.init_params(cell, sizes, seed=7)
    theirs = mod.init_params(*[sizes[d.removeprefix("n_")] for d in mod.DIMS], seed=7)
    assert list(ours) == list(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_default_sizes_give_every_other_dimension_its_own():
    assert flow_stepper.problem_sizes(load_builtin("lstm")) == {"x": 8, "h": 32, "y": 8}
    assert flow_stepper.problem_sizes(cell_named("two_states")) == {"x": 8, "h": 32, "c": 33, "y": 8}
    assert flow_stepper.problem_sizes(cell_named("two_states"), {"h": 4}) == {"x": 8, "h": 4, "c": 5, "y": 8}


def test_recurrent_params_are_the_weights_on_a_previous_state():
    assert recurrent_params(load_builtin("rnn")) == ("W_hh",)
    assert recurrent_params(load_builtin("gru")) == ("U_r", "U_u", "U_n")  # U_n reads r * h[t-1]
    assert recurrent_params(load_builtin("lstm")) == ("U_f", "U_i", "U_o", "U_g")
    assert recurrent_params(cell_named("two_states")) == ("U", "C", "G")  # not M, which reads c at t
    # U2 reads h[t-2] through the delay line; Wp reads x[t-1], an input's line: no recurrence
    assert recurrent_params(cell_named("narx")) == ("U", "U2")
    assert recurrent_params(cell_named("tied_two_states")) == ("U", "V")  # V^T c + V h[t-1]: V reads h[t-1]
    assert recurrent_params(cell_named("tied")) == ("U",)  # not E, which reads x and h at t


def test_a_transposed_weight_on_a_previous_state_is_recurrent():
    cell = parse(
        "param W[h, x], E[h, h], V[y, h]\ninput x[x]; state h[h] = 0; target l: class(y)\n"
        "h = tanh(W x + E^T h[t-1])\ny = V h\nJ = cross_entropy(softmax(y), l)\n"
    )
    assert recurrent_params(cell) == ("E",)


def test_scale_multiplies_only_the_recurrent_weights():
    cell = load_builtin("gru")
    one, two = flow_stepper.make_problem(cell, 3, scale=1.0), flow_stepper.make_problem(cell, 3, scale=2.0)
    for name in cell.param_names:
        factor = 2.0 if name in ("U_r", "U_u", "U_n") else 1.0
        np.testing.assert_array_equal(two.params[name], factor * one.params[name])
    for name in one.inputs:
        np.testing.assert_array_equal(one.inputs[name], two.inputs[name])


def test_evaluator_reports_an_unknown_node_by_type():
    W = sp.MatrixSymbol("W", 2, 2)
    with pytest.raises(NotImplementedError, match="Inverse"):
        evaluator.evaluate(sp.Inverse(W), {"W": np.eye(2)}, {})


def test_evaluator_on_numbers_ones_and_powers():
    n = sp.Symbol("n_h", integer=True, positive=True)
    h = sp.MatrixSymbol("h@t", n, 1)
    expr = sp.MatAdd(sp.OneMatrix(n, 1), sp.MatMul(sp.Integer(-2), sp.HadamardPower(h, 2)))
    value = evaluator.evaluate(expr, {"h@t": np.array([[1.0], [3.0]])}, {"h": 2})
    np.testing.assert_array_equal(value, [[-1.0], [-17.0]])


# ---- the gradient flow --------------------------------------------------------------------


def initial_gradient(mod, problem: flow_stepper.Problem) -> dict[str, np.ndarray]:
    """dJ_T/dh_0 (and c_0, ...) from the generated module: for J = sum_t J_t, dJ/dh_0 of T steps
    minus that of T - 1 steps; for a many-to-one cell, dJ/dh_0 itself."""
    args, initial = module_args(mod, problem)
    _, grads = mod.loss_and_gradients(problem.params, *args, **initial)
    expected = {key: grads[key] for key in mod.INITIAL}
    if mod.LOSS_AT == "every" and problem.steps > 1:
        args, initial = module_args(mod, problem, problem.steps - 1)
        _, earlier = mod.loss_and_gradients(problem.params, *args, **initial)
        expected = {key: expected[key] - earlier[key] for key in mod.INITIAL}
    return expected


def assert_g0(mod, result: flow.Flow, problem: flow_stepper.Problem) -> None:
    """Every declared state's part of the stacked g_0 (the LSTM's h_0 and c_0) against the module; a
    delay line's parts, after them (h_{-1}, x_0: zeros, no argument), the module does not give."""
    expected = initial_gradient(mod, problem)
    declared = [size for name, size in zip(result.states, result.state_sizes) if naming.delay_of(name) is None]
    assert len(declared) == len(mod.INITIAL)
    i = 0
    for key, size in zip(mod.INITIAL, declared):
        got = result.grad[0, i : i + size]
        assert max_rel_error(got, expected[key], CHAIN_FLOOR) <= CHAIN_RTOL, key
        i += size
    assert i == sum(declared)


@pytest.mark.parametrize(
    ("name", "steps"),
    [(name, steps) for name in ("rnn", "gru", "lstm", "two_states", "m2o_lstm", "narx") for steps in (1, 2, 5)]
    + [("m2o_lstm", 30)],
)
def test_g0_equals_the_modules_initial_state_gradient(name, steps):
    """dJ_T/ds_0 by the chain rule over the complex-step Jacobians, against the generated module."""
    cell, mod = cell_named(name), module(name)
    sizes = {d: n for d, n in SMALL.items() if d in cell.dims}
    result = flow.gradient_flow(cell, steps, seed=steps, sizes=sizes)
    assert_g0(mod, result, flow_stepper.make_problem(cell, steps, seed=steps, sizes=sizes))


@pytest.mark.parametrize("name", sorted(p.stem for p in CORPUS.glob("*.cell")))
def test_every_corpus_cell(name):
    """The test corpus (several inputs, targets and states, many-to-one, relu, exp, residual, losses
    added and weighted): the loss and g_0 against the generated module at T = 3."""
    cell, mod = cell_named(name), module(name)
    sizes = {d: n for d, n in SMALL.items() if d in cell.dims}
    problem = flow_stepper.make_problem(cell, 3, seed=1, sizes=sizes)
    args, initial = module_args(mod, problem)
    expected, _ = mod.loss_and_gradients(problem.params, *args, **initial)
    assert abs(flow_stepper.forward(cell, problem).loss - expected) <= LOSS_RTOL * abs(expected)
    assert_g0(mod, flow.gradient_flow(cell, 3, seed=1, sizes=sizes), problem)


@pytest.mark.parametrize("name", ["rnn", "lstm", "two_states"])
def test_step_jacobian_against_central_differences_and_the_chain_at_T(name):
    cell = cell_named(name)
    sizes = {d: n for d, n in SMALL.items() if d in cell.dims}
    steps = 3
    problem = with_random_initial(flow_stepper.make_problem(cell, steps, seed=1, sizes=sizes), seed=1)
    stepper = flow_stepper.Stepper(cell, problem)
    run = stepper.forward()
    s = run.states

    def step(t: int, s_prev: np.ndarray) -> np.ndarray:
        env = stepper.base(t) | stepper.split(s_prev[:, None])
        return stepper.stack(stepper.run(env, stepper.state_eqs))[:, 0]

    for t in range(1, steps + 1):
        exact = stepper.step_jacobian(t, s[t - 1])
        np.testing.assert_allclose(step(t, s[t - 1]), s[t], rtol=SAME_RTOL, atol=0)
        fd = np.empty_like(exact)
        for j in range(len(s[t - 1])):
            e = np.zeros(len(s[t - 1]))
            e[j] = FD_EPS
            fd[:, j] = (step(t, s[t - 1] + e) - step(t, s[t - 1] - e)) / (2 * FD_EPS)
        assert max_rel_error(exact, fd) <= FD_RTOL
    # outputs that read only the states of their own step: the total dJ_T/ds_{T-1} is g_T A_T
    g_T = stepper.loss_gradient(run.envs[-1], s[steps])
    total = stepper.total_loss_gradient(steps, s[steps - 1])
    assert max_rel_error(total, g_T @ stepper.step_jacobian(steps, s[steps - 1])) <= SAME_RTOL


@pytest.mark.parametrize("name", ["rnn", "elman", "gru", "lstm"])
def test_norms_are_consistent(name):
    steps = 12
    result = flow.gradient_flow(load_builtin(name), steps, scale=1.5, sizes={"h": 10})
    n_s = sum(result.state_sizes)
    assert result.states == tuple(s.name for s in load_builtin(name).states)
    assert result.grad.shape == (steps + 1, n_s)
    assert result.grad_norm.shape == result.jacobian_norm.shape == (steps + 1,)
    assert result.step_norm.shape == (steps,)
    assert not result.grad_norm.flags.writeable and not result.jacobian_norm.flags.writeable
    assert result.jacobian_norm[steps] == 1.0  # P_T = I
    assert abs(result.jacobian_norm[steps - 1] - result.step_norm[steps - 1]) <= SAME_RTOL * result.step_norm[-1]
    np.testing.assert_allclose(result.grad_norm, np.linalg.norm(result.grad, axis=1), rtol=SAME_RTOL)
    for k in range(steps):
        # P_k = P_{k+1} A_{k+1}: ||P_k|| <= ||P_{k+1}|| ||A_{k+1}||, and g_k = g_T P_k
        bound = result.jacobian_norm[k + 1] * result.step_norm[k]
        assert result.jacobian_norm[k] <= bound * (1 + SUBMULT_RTOL)
        assert result.grad_norm[k] <= result.grad_norm[steps] * result.jacobian_norm[k] * (1 + SUBMULT_RTOL)


def test_a_contracting_rnn_vanishes_monotonically():
    """With scale 0.1 every step contracts (||A_t|| < 1), so ||P_k|| falls strictly as k -> 0."""
    steps = 30
    result = flow.gradient_flow(load_builtin("rnn"), steps, scale=0.1)
    assert np.all(result.step_norm < 1)
    assert np.all(np.diff(result.jacobian_norm) > 0)
    assert np.all(np.diff(result.grad_norm) > 0)
    assert result.jacobian_norm[0] < 1e-25


def test_scale_half_vanishes_and_scale_four_explodes():
    """Measured, T = 30: the seed RNN at scale 0.5 (seed 0) falls at every step, to ||P_0|| = 4e-15;
    at scale 4 tanh saturates, so the growth is not monotone, but over seeds 0-4 ||P_0|| is 3e5 to
    7e6 and ||g_0|| / ||g_T|| 4e3 to 6e5.  (At scale 3 the seeds spread from 1e2 to 3e4.)"""
    rnn = load_builtin("rnn")
    half = flow.gradient_flow(rnn, 30, scale=0.5)
    assert np.all(np.diff(half.jacobian_norm) > 0) and np.all(np.diff(half.grad_norm) > 0)
    assert half.jacobian_norm[0] < 1e-12
    for seed in range(5):
        four = flow.gradient_flow(rnn, 30, scale=4.0, seed=seed)
        assert four.jacobian_norm[0] > 1e4
        assert four.grad_norm[0] > 1e2 * four.grad_norm[30]


@pytest.mark.parametrize("name", ["rnn", "elman", "gru", "lstm"])
def test_a_larger_scale_keeps_more_gradient(name):
    flows = flow.flow_curves(load_builtin(name), 30)
    assert [f.scale for f in flows] == list(flow.DEFAULT_SCALES)
    first = [f.jacobian_norm[0] for f in flows]
    assert first == sorted(first) and len(set(first)) == len(first)


# ---- given parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["elman", "lstm"])
def test_given_params_round_trip(name):
    cell = load_builtin(name)
    random = flow.gradient_flow(cell, 6, seed=3, scale=0.7, sizes={"h": 6})
    params = flow_stepper.make_problem(cell, 6, seed=3, scale=0.7, sizes={"h": 6}).params
    given = flow.gradient_flow(cell, 6, params=params, seed=3)
    assert given.params_given and given.scale is None and given.label == "given parameters"
    assert not random.params_given and random.scale == 0.7 and random.label == "scale 0.7"
    assert given.sizes == random.sizes
    for field in ("grad", "grad_norm", "jacobian_norm", "step_norm"):
        np.testing.assert_array_equal(getattr(given, field), getattr(random, field))
    assert given.loss == random.loss
    (single,) = flow.flow_curves(cell, 6, seed=3, params=params)
    np.testing.assert_array_equal(single.grad_norm, given.grad_norm)


def _bad(params: dict, **changes) -> dict:
    out = dict(params, **changes)
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"W_hy": None}, "params: missing W_hy for the cell 'rnn'"),
        ({"W_zz": np.zeros(2)}, "params: unknown W_zz for the cell 'rnn' (it has W_xh, W_hh, W_hy)"),
        (
            {"W_hh": np.zeros((31, 32))},
            "params['W_hh']: expected shape (32, 32), got (31, 32) (n_h = 32 from params['W_xh'])",
        ),
        (
            {"W_hy": np.zeros(8)},
            "params['W_hy']: expected shape (8, 32), got (8,) (n_y = 8 from the default, n_h = 32 from params['W_xh'])",
        ),
        ({"W_hh": np.array([["a"]])}, "params['W_hh']: expected an array of real numbers, got dtype <U1"),
        ({"W_hh": np.full((32, 32), np.inf)}, "params['W_hh']: expected finite numbers"),
    ],
)
def test_bad_params_give_one_clear_message(change, message):
    cell = load_builtin("rnn")
    params = _bad(flow_stepper.make_problem(cell, 2).params, **change)
    with pytest.raises(ValueError) as info:
        flow.gradient_flow(cell, 2, params=params)
    assert str(info.value) == message


def test_bad_arguments():
    cell = load_builtin("rnn")
    with pytest.raises(ValueError, match=r"^steps: expected a positive integer, got 0$"):
        flow.gradient_flow(cell, 0)
    with pytest.raises(ValueError, match=r"^scale: expected a finite number >= 0, got nan$"):
        flow.gradient_flow(cell, 2, scale=math.nan)
    with pytest.raises(ValueError, match=r"^sizes: the cell 'rnn' has no dimension 'c' \(it has x, h, y\)$"):
        flow.gradient_flow(cell, 2, sizes={"c": 3})
    with pytest.raises(ValueError, match=r"^sizes\['h'\]: expected a positive integer, got 0$"):
        flow.gradient_flow(cell, 2, sizes={"h": 0})
    params = flow_stepper.make_problem(cell, 2).params
    with pytest.raises(ValueError, match=r"^scale: applies to random parameters only, got 2.0 with given params$"):
        flow.gradient_flow(cell, 2, params=params, scale=2.0)


def test_flow_steps():
    assert flow.FLOW_MIN_STEPS == 30
    assert flow.flow_steps(1) == flow.flow_steps(30) == 30
    assert flow.flow_steps(31) == 31


# ---- the PNG ------------------------------------------------------------------------------


EXPECTED_PIXELS = (
    round(flow_plot.FIGSIZE_INCHES[0] * flow_plot.DPI),
    round(flow_plot.FIGSIZE_INCHES[1] * flow_plot.DPI),
)


@pytest.mark.slow  # the LSTM's flow at T = 30, twice
def test_png_has_the_size_and_the_same_bytes_every_run(tmp_path):
    assert EXPECTED_PIXELS == (1200, 450)
    flows = flow.flow_curves(load_builtin("lstm"), 30)
    first, second = tmp_path / "a" / "lstm_flow.png", tmp_path / "lstm_flow.png"
    flow_plot.plot(flows, first)
    flow_plot.plot(flow.flow_curves(load_builtin("lstm"), 30), second)
    data = first.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert png_size(data) == EXPECTED_PIXELS
    assert data == second.read_bytes()
    assert MARK.encode() in data and b"Software" not in data  # a tEXt chunk with the generated mark
    assert sorted(p.name for p in first.parent.iterdir()) == ["lstm_flow.png"]  # no temporary left


def test_png_with_zero_and_non_finite_norms(tmp_path):
    (result,) = flow.flow_curves(load_builtin("rnn"), 5, scales=(1.0,))
    odd = dataclasses.replace(
        result,
        grad_norm=np.array([0.0, np.inf, np.nan, 1e-3, 1e-2, 1.0]),
        jacobian_norm=np.array([np.inf, 0.0, 1e-4, 1e-3, 1e-2, 1.0]),
    )
    zero = dataclasses.replace(result, title="costs in $ (50%)", grad_norm=np.zeros(6), jacobian_norm=np.zeros(6))
    path = tmp_path / "odd.png"
    flow_plot.plot([odd, zero], path)
    assert png_size(path.read_bytes()) == EXPECTED_PIXELS
    with pytest.raises(ValueError, match="at least one Flow"):
        flow_plot.plot([], tmp_path / "none.png")


def test_a_gradient_that_is_zero_everywhere_is_plotted_and_said(tmp_path):
    """Equal logits and W_y with equal columns: dJ_T/dh_T = W_y^T (p - e_c) = 0, so no point of the
    left panel can go on a log axis; the figure says so instead of failing."""
    cell = load_builtin("rnn")
    params = {"W_xh": np.full((4, 3), 0.1), "W_hh": np.full((4, 4), 0.1), "W_hy": np.ones((2, 4))}
    f = flow.gradient_flow(cell, 5, params=params)
    assert np.all(f.grad_norm == 0.0)
    assert np.all(f.jacobian_norm > 0.0)
    path = tmp_path / "zero.png"
    flow_plot.plot([f], path)
    assert png_size(path.read_bytes()) == EXPECTED_PIXELS


def test_a_cell_with_no_recurrent_weight_gets_one_curve(tmp_path):
    """Scaling no weight changes nothing: one curve, labelled so, not four identical ones."""
    from derive.spec.parser import parse

    text = (
        'cell decay "a fixed decay"\nparam W[h, x], V[y, h]\ninput x[x]; state h[h] = 0; target label: class(y)\n'
        "h = 0.5 * h[t-1] + tanh(W x)\ny = V h\nJ = cross_entropy(softmax(y), label)\n"
    )
    cell = parse(text)
    assert recurrent_params(cell) == ()
    flows = flow.flow_curves(cell, 10)
    assert [f.label for f in flows] == ["no recurrent weight to scale"]
    assert flows[0].jacobian_norm[0] == pytest.approx(0.5**10, rel=1e-12)  # ds_T/ds_0 = 0.5^T I
    flow_plot.plot(flows, tmp_path / "decay.png")


def test_an_overflowing_state_gives_nan_norms_and_its_step():
    cell = cell_named("m2o_classify")
    f = flow.gradient_flow(cell, 200, scale=100.0)
    assert f.overflow is not None and 1 <= f.overflow <= 200
    assert np.isnan(f.grad_norm).all() and np.isnan(f.jacobian_norm).all()
    assert flow.gradient_flow(cell, 20, scale=1.0).overflow is None
