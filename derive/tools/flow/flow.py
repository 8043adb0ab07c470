"""How the gradient flows back in time: vanishing and exploding gradients, measured.

For one sequence of a cell, let s_t be all of the cell's states at step t stacked into one
column vector (an LSTM: s_t = [h_t; c_t]; a one-state cell: s_t = h_t), with s_0 the initial
state.  One step of the cell is a map s_t = F_t(s_{t-1}) (it reads x_t and the parameters
too), and its Jacobian, in numerator layout (row i, column j holds d s_t[i] / d s_{t-1}[j]), is

    A_t = ds_t / ds_{t-1}                                    (n_s x n_s), t = 1..T.

The loss followed is the last one, J_T: the loss at step T of a many-to-many cell (whose
total loss is J = sum_t J_t), or the only one of a many-to-one cell.  Its gradient with
respect to an earlier state is a row vector, by the chain rule

    g_T = dJ_T/ds_T,    g_k = dJ_T/ds_k = g_T A_T A_{T-1} ... A_{k+1} = g_T P_k,
    P_k = prod_{j=k+1}^{T} ds_j/ds_{j-1} = ds_T/ds_k         (P_T = I),

so ||g_k|| <= ||g_T|| ||P_k|| (for the usual cell; see g_{T-1} below), and the spectral norms
||P_k||_2 say how much any gradient arriving at s_T can be amplified (explode) or must shrink
(vanish) over T - k steps.
``gradient_flow`` returns ||g_k||_2 and ||P_k||_2 for k = 0..T.

Here g_T is the partial derivative of J_T with respect to the state nodes of step T: the
output equations (y, p, J) are recomputed from s_T while every other node of step T is held
at its value.  g_{T-1} is the total derivative of J_T with respect to s_{T-1} through the
whole of step T: for a cell whose outputs read only the states of their own step it equals
g_T A_T; a cell whose outputs also read h[t-1] or a gate gets its direct path too.  For
k < T - 1, g_k = g_{k+1} A_{k+1}.

The Jacobians and g_T come from ``stepper`` (by the complex step, exact to float64
rounding) on one seeded sequence (``stepper.make_problem``); ``trend`` turns ||P_0||_2 into
a verdict, and ``plot`` draws both norms against time for a few scales of the recurrent
weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from derive.ir.cell import Cell, recurrent_params
from derive.tools.flow.stepper import Problem, Stepper, make_problem

FLOW_MIN_STEPS = 30  # the plot shows a trend only over enough steps
DEFAULT_SCALES = (0.5, 1.0, 2.0, 4.0)  # vanishing, the edge, and two that grow for a tanh RNN
# the verdict, on ||ds_T/ds_0||: the most a gradient arriving at s_T can grow, or must shrink, over T steps
FLOW_VANISHING, FLOW_EXPLODING = 1e-2, 1e2

Array = np.ndarray


def flow_steps(steps: int) -> int:
    """The T to plot the flow at: at least FLOW_MIN_STEPS, so that a trend shows."""
    return max(steps, FLOW_MIN_STEPS)


def _vector_norm(v: Array) -> float:
    """||v||_2 without overflow in the squares; inf (nan) when v has an inf (nan)."""
    if not np.all(np.isfinite(v)):
        return math.nan if np.any(np.isnan(v)) else math.inf
    m = float(np.max(np.abs(v))) if v.size else 0.0
    return 0.0 if m == 0 else m * float(np.linalg.norm(v / m))


def _spectral_norm(a: Array) -> float:
    """||a||_2, the largest singular value; inf (nan) when a has an inf (nan)."""
    if not np.all(np.isfinite(a)):
        return math.nan if np.any(np.isnan(a)) else math.inf
    return float(np.linalg.norm(a, 2))


@dataclass(frozen=True, eq=False)
class Flow:
    """How dJ_T/ds_k and ds_T/ds_k behave over k = 0..T for one cell, problem and scale.

    ``grad[k]`` is g_k = dJ_T/ds_k (a row of n_s), ``grad_norm[k]`` its 2-norm,
    ``jacobian_norm[k]`` the spectral norm of P_k = prod_{j=k+1}^{T} ds_j/ds_{j-1} (1 at k = T),
    ``step_norm[j - 1]`` that of the one-step A_j = ds_j/ds_{j-1}, j = 1..T.  ``scale`` is None
    when the parameters were given.  The arrays are read-only.
    """

    cell: str
    title: str
    steps: int
    scale: float | None
    seed: int
    sizes: Mapping[str, int]
    params_given: bool
    states: tuple[str, ...]  # stacked in this order
    state_sizes: tuple[int, ...]
    recurrent: tuple[str, ...]  # the weights that scale multiplied
    loss: float  # J_T
    grad: Array  # (T + 1, n_s)
    grad_norm: Array  # (T + 1,)
    jacobian_norm: Array  # (T + 1,)
    step_norm: Array  # (T,)
    overflow: int | None = None  # the first step whose state is not finite (then every norm is nan)

    @property
    def label(self) -> str:
        if self.scale is None:
            return "given parameters"
        return f"scale {self.scale:g}" if self.recurrent else "no recurrent weight to scale"


def _frozen(a: Array | Sequence[float]) -> Array:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def gradient_flow(
    cell: Cell,
    steps: int,
    params: Mapping[str, object] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    sizes: Mapping[str, int] | None = None,
) -> Flow:
    """||dJ_T/ds_k||_2 and ||ds_T/ds_k||_2 for k = 0..T on one seeded sequence (``make_problem``).

    Without ``params`` the parameters follow the generated modules' init_params(seed), N(0,
    1/fan_in), with the recurrent weights (``recurrent_params``: U h[t-1], and U (r * h[t-1]))
    multiplied by ``scale``: their spectral radius is then about ``scale``, so in the near-linear
    regime of tanh and sigmoid a scale below 1 makes the gradient vanish and one above 1 makes
    it grow, until the activations saturate.  Sizes: ``sizes`` by dimension name, else
    n_x = n_y = 8, n_h = 32.  Given ``params`` (validated by ``check_params``), the sizes come
    from the arrays, and ``scale`` must be left at 1.
    """
    problem = make_problem(cell, steps, params, seed, scale, sizes)
    stepper = Stepper(cell, problem)
    with np.errstate(all="ignore"):  # an overflow is found below and reported, not warned about
        run = stepper.forward()
    s = run.states
    finite = np.all(np.isfinite(s), axis=1)
    overflow = None if finite.all() else int(np.argmin(finite))
    if overflow is not None:  # the states themselves overflow: no derivative means anything
        return _flow(cell, problem, stepper, params, seed, scale, run.losses.get(steps, math.nan), overflow)
    jacobians = [stepper.step_jacobian(t, s[t - 1]) for t in range(1, steps + 1)]  # A_1..A_T
    grads = np.empty((steps + 1, stepper.n_s))
    grads[steps] = stepper.loss_gradient(run.envs[-1], s[steps])
    grads[steps - 1] = stepper.total_loss_gradient(steps, s[steps - 1])
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps - 2, -1, -1):
            grads[k] = grads[k + 1] @ jacobians[k]  # g_k = g_{k+1} A_{k+1} (jacobians[j - 1] is A_j)
        product = np.eye(stepper.n_s)
        jacobian_norm = np.empty(steps + 1)
        jacobian_norm[steps] = 1.0
        for k in range(steps - 1, -1, -1):
            product = product @ jacobians[k]  # P_k = P_{k+1} A_{k+1}
            jacobian_norm[k] = _spectral_norm(product)
    step_norm = [_spectral_norm(a) for a in jacobians]
    return _flow(cell, problem, stepper, params, seed, scale, run.losses[steps], None, grads, jacobian_norm, step_norm)


def _flow(
    cell: Cell,
    problem: Problem,
    stepper: Stepper,
    params: Mapping[str, object] | None,
    seed: int,
    scale: float,
    loss: float,
    overflow: int | None,
    grads: Array | None = None,
    jacobian_norm: Array | None = None,
    step_norm: Sequence[float] | None = None,
) -> Flow:
    """The Flow of one run; without ``grads`` (an overflow), every norm is nan."""
    steps = problem.steps
    if grads is None:
        grads = np.full((steps + 1, stepper.n_s), math.nan)
        jacobian_norm, step_norm = np.full(steps + 1, math.nan), [math.nan] * steps
    assert jacobian_norm is not None and step_norm is not None
    return Flow(
        cell=cell.name,
        title=cell.title,
        steps=steps,
        scale=None if params is not None else float(scale),
        seed=seed,
        sizes=dict(problem.sizes),
        params_given=params is not None,
        states=tuple(st.name for st in cell.states),
        state_sizes=stepper.dims,
        recurrent=() if params is not None else recurrent_params(cell),
        loss=loss,
        grad=_frozen(grads),
        grad_norm=_frozen([_vector_norm(g) for g in grads]),
        jacobian_norm=_frozen(jacobian_norm),
        step_norm=_frozen(step_norm),
        overflow=overflow,
    )


def flow_curves(
    cell: Cell,
    steps: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    seed: int = 0,
    params: Mapping[str, object] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> list[Flow]:
    """One Flow per scale of the recurrent weights, on the same sequence; one Flow for given params."""
    if params is not None:
        return [gradient_flow(cell, steps, params=params, seed=seed, sizes=sizes)]
    if not scales:
        raise ValueError("scales: expected at least one scale")
    if not recurrent_params(cell):  # scaling changes nothing: one curve
        return [gradient_flow(cell, steps, seed=seed, sizes=sizes)]
    return [gradient_flow(cell, steps, seed=seed, scale=s, sizes=sizes) for s in scales]


def trend(flow: Flow) -> str:
    """What ||ds_T/ds_0|| says about the gradient over the T steps, with its mean factor per step."""
    if flow.overflow is not None:
        return f"the state overflows at step {flow.overflow}: explodes"
    total = float(flow.jacobian_norm[0])
    if not math.isfinite(total):
        return "the Jacobian product overflows: explodes"
    if total == 0.0:
        return "zero: vanishes"
    if total < FLOW_VANISHING:
        verdict = "vanishes"
    elif total > FLOW_EXPLODING:
        verdict = "explodes"
    else:
        verdict = "neither vanishes nor explodes"
    return f"x{total ** (1.0 / flow.steps):.2f} per step: {verdict}"
