"""One sequence of a cell for ``bptt flow``, and the cell's step as numeric maps.

The sequence (``make_problem``): the generated modules' init_params, N(0, 1/fan_in), with the
recurrent weights (those multiplying a previous state) times ``scale``, or given parameters;
inputs and real targets from N(0, 1), class labels uniform, zero initial states; n_x = n_y = 8,
n_h = 32 unless ``sizes`` says otherwise.  ``Stepper`` runs it forward (``forward``) with the
``evaluator`` and gives the derivatives that ``flow.gradient_flow`` chains: the one-step
Jacobian A_t = ds_t/ds_{t-1}, g_T = dJ_T/ds_T and dJ_T/ds_{T-1}.

The derivatives are by the complex step: for an analytic f, f'(a) = Im f(a + i eps) / eps
+ O(eps^2), with no difference of nearly equal numbers, so with eps = COMPLEX_STEP = 1e-20
the Jacobians are exact to float64 rounding (relative ~1e-15, against ~1e-8 for central
differences).  All n_s columns of A_t come from one batched evaluation of the step, on an
(n, n_s) block of perturbed copies of s_{t-1}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from derive.ir import naming
from derive.ir.cell import Cell, recurrent_params
from derive.ir.exprs import Softmax
from derive.ir.ops import Sigmoid
from derive.verify.evaluator import Evaluator

COMPLEX_STEP = 1e-20  # eps of the complex step: its truncation error, eps^2 |f'''|, is far below float64 rounding
DEFAULT_SIZES = {"x": 8, "h": 32, "y": 8}  # any other dimension: n_h + 1, n_h + 2, ... (as verify.random_problem)

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class Problem:
    """One sequence of a cell: parameters, inputs, targets, initial states, and the sizes.

    ``params`` as the generated module takes them (a bias as an (n,) vector); ``inputs[name]`` is
    (T, n); ``targets[name]`` is (T,) integer labels or (T, n) reals, or one label () / one
    vector (n,) for a many-to-one cell; ``initial[state]`` is (n,).
    """

    params: Mapping[str, Array]
    inputs: Mapping[str, Array]
    targets: Mapping[str, Array]
    initial: Mapping[str, Array]
    sizes: Mapping[str, int]

    @property
    def steps(self) -> int:
        return len(next(iter(self.inputs.values())))


def problem_sizes(cell: Cell, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Every dimension's size: ``sizes``, else DEFAULT_SIZES, else n_h + 1, n_h + 2, ... in the
    cell's order (each its own, so that a transposition cannot hide behind equal sizes)."""
    given = dict(sizes or {})
    for dim, n in given.items():
        if dim not in cell.dims:
            raise ValueError(f"sizes: the cell {cell.name!r} has no dimension {dim!r} (it has {', '.join(cell.dims)})")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"sizes[{dim!r}]: expected a positive integer, got {n!r}")
    defaults = {d: n for d, n in DEFAULT_SIZES.items() if d in cell.dims}
    n_h = given.get("h", DEFAULT_SIZES["h"])
    others = iter(range(n_h + 1, n_h + 1 + len(cell.dims)))
    return {d: int(given[d]) if d in given else defaults[d] if d in defaults else next(others) for d in cell.dims}


def init_params(cell: Cell, sizes: Mapping[str, int], seed: int = 0) -> dict[str, Array]:
    """The generated modules' convention: every parameter from N(0, 1/fan_in) (fan_in: its last
    axis), drawn in the cell's order from ``default_rng(seed)``; the same arrays as the generated
    module's ``init_params(*sizes, seed=seed)``."""
    rng = np.random.default_rng(seed)
    params = {}
    for p in cell.params:
        shape = tuple(sizes[d] for d in p.shape)
        params[p.name] = rng.standard_normal(shape) / np.sqrt(shape[-1])
    return params


def check_params(cell: Cell, params: Mapping[str, object], sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Validate given parameters and return every dimension's size.

    Sizes come from ``sizes`` where given, else from the first parameter (in the cell's order)
    that has the dimension.  One ValueError names the first problem: missing or unknown names,
    a non-numeric array, or a shape other than the expected one.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a dict of arrays keyed by {', '.join(cell.param_names)}")
    missing = [n for n in cell.param_names if n not in params]
    if missing:
        raise ValueError(f"params: missing {', '.join(missing)} for the cell {cell.name!r}")
    extra = sorted(str(n) for n in params if n not in cell.param_names)
    if extra:
        raise ValueError(
            f"params: unknown {', '.join(extra)} for the cell {cell.name!r} (it has {', '.join(cell.param_names)})"
        )
    arrays = {}
    for p in cell.params:
        try:
            arrays[p.name] = np.asarray(params[p.name])
        except (TypeError, ValueError) as e:
            raise ValueError(f"params[{p.name!r}]: expected an array of real numbers ({e})") from None
        if arrays[p.name].dtype.kind not in "biuf":
            raise ValueError(f"params[{p.name!r}]: expected an array of real numbers, got dtype {arrays[p.name].dtype}")
    known = dict(sizes or {})
    origin = {dim: "sizes" for dim in known}
    for p in cell.params:  # the first parameter with a dimension fixes its size
        shape = arrays[p.name].shape
        if len(shape) == len(p.shape):
            for dim, n in zip(p.shape, shape):
                if dim not in known:
                    known[dim], origin[dim] = int(n), f"params[{p.name!r}]"
    full = problem_sizes(cell, known)
    for p in cell.params:
        expected = tuple(full[d] for d in p.shape)
        got = arrays[p.name].shape
        if got != expected:
            why = ", ".join(f"n_{d} = {full[d]} from {origin.get(d, 'the default')}" for d in dict.fromkeys(p.shape))
            raise ValueError(f"params[{p.name!r}]: expected shape {expected}, got {got} ({why})")
    for p in cell.params:
        if not np.all(np.isfinite(arrays[p.name])):
            raise ValueError(f"params[{p.name!r}]: expected finite numbers")
    return full


def make_problem(
    cell: Cell,
    steps: int,
    params: Mapping[str, object] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    sizes: Mapping[str, int] | None = None,
) -> Problem:
    """A seeded random sequence: inputs from N(0, 1), class labels uniform, real targets from
    N(0, 1), all drawn from ``default_rng([seed, 1])``; zero initial states (the cells'
    ``state h[h] = 0``); the parameters given, or ``init_params(seed)`` with the recurrent
    weights (``recurrent_params``) times ``scale``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if params is None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale: expected a finite number >= 0, got {scale!r}")
        full = problem_sizes(cell, sizes)
        values = init_params(cell, full, seed)
        for name in recurrent_params(cell):
            values[name] = scale * values[name]
    else:
        if scale != 1.0:
            raise ValueError(f"scale: applies to random parameters only, got {scale!r} with given params")
        full = check_params(cell, params, sizes)
        values = {p.name: np.asarray(params[p.name], dtype=np.float64).copy() for p in cell.params}
    rng = np.random.default_rng([seed, 1])  # a stream of its own: init_params draws from default_rng(seed)
    inputs = {v.name: rng.standard_normal((steps, full[v.dim])) for v in cell.inputs}
    per: tuple[int, ...] = () if cell.loss_mode == "last" else (steps,)
    targets = {
        v.name: rng.integers(0, full[v.dim], per) if v.kind == "class" else rng.standard_normal(per + (full[v.dim],))
        for v in cell.targets
    }
    initial = {s.name: np.zeros(full[s.dim]) for s in cell.declared_states}
    return Problem(values, inputs, targets, initial, full)


@dataclass(frozen=True, eq=False)
class Forward:
    """A forward pass: the stacked states s_0..s_T (T + 1, n_s), each J_t that enters J, and
    every node's value at each step (``envs[t - 1]``, step-relative names: ``"h@t"``)."""

    states: Array
    losses: Mapping[int, float]
    envs: tuple[Mapping[str, Array], ...]

    @property
    def loss(self) -> float:
        """J: the sum of the J_t (J_T alone for a many-to-one cell)."""
        return float(sum(self.losses.values()))


class Stepper:
    """The cell's step as numeric maps: forward, s_{t-1} -> s_t, and s_T -> J_T."""

    def __init__(self, cell: Cell, problem: Problem) -> None:
        self.cell, self.problem = cell, problem
        probabilities = {
            naming.step_name(eq.name, "t"): eq.rhs for eq in cell.equations if isinstance(eq.rhs, (Softmax, Sigmoid))
        }
        self.evaluate = Evaluator(problem.sizes, probabilities)
        self.state_eqs = tuple(eq for eq in cell.equations if eq.name not in cell.outputs)
        self.output_eqs = tuple(eq for eq in cell.equations if eq.name in cell.outputs)
        self.dims = tuple(problem.sizes[s.dim] for s in cell.states)
        params = {k: np.asarray(v, dtype=np.float64) for k, v in problem.params.items()}
        self.columns = {k: v[:, None] if v.ndim == 1 else v for k, v in params.items()}  # a bias as a column

    @property
    def n_s(self) -> int:
        return sum(self.dims)

    def split(self, s: Array, step: str = "t-1") -> dict[str, Array]:
        """A stacked state (n_s, B) as the cell's states by name, at ``step`` (``"h@t-1"``)."""
        out, i = {}, 0
        for state, n in zip(self.cell.states, self.dims):
            out[naming.step_name(state.name, step)] = s[i : i + n]
            i += n
        return out

    def stack(self, env: Mapping[str, Array]) -> Array:
        """The states of step t stacked, each (n, columns); a state that reads no earlier state (h = tanh(W x))
        is one column whatever the perturbation, and stands for all of them (its derivative is 0)."""
        blocks = [env[naming.step_name(s.name, "t")] for s in self.cell.states]
        width = max(b.shape[1] for b in blocks)
        return np.concatenate([np.broadcast_to(b, (b.shape[0], width)) for b in blocks], axis=0)

    def base(self, t: int) -> dict[str, Array]:
        """The parameters, the inputs at step t and (where J_t is computed) the targets."""
        env = dict(self.columns)
        steps = self.problem.steps
        for v in self.cell.inputs:
            env[naming.step_name(v.name, "t")] = np.asarray(self.problem.inputs[v.name][t - 1], np.float64)[:, None]
        if t in self.cell.loss_steps(steps):
            for target in self.cell.targets:
                value = np.asarray(self.problem.targets[target.name])
                value = value if self.cell.loss_mode == "last" else value[t - 1]
                if target.kind == "class":
                    column = np.zeros((self.problem.sizes[target.dim], 1))
                    column[int(value), 0] = 1.0
                else:
                    column = np.asarray(value, np.float64)[:, None]
                env[naming.step_name(target.name, "t")] = column
        return env

    def run(self, env: dict[str, Array], equations: Sequence[Any]) -> dict[str, Array]:
        for eq in equations:
            env[naming.step_name(eq.name, "t")] = self.evaluate(eq.rhs, env)
        return env

    def forward(self) -> Forward:
        steps = self.problem.steps
        # s_0: the declared states' initial values, and zeros for a delay line's (h_{-1}, x_0)
        start = {**self.problem.initial, **{d.name: np.zeros(self.problem.sizes[d.dim]) for d in self.cell.delays}}
        s = np.concatenate([np.asarray(start[st.name], np.float64) for st in self.cell.states])
        states, losses, envs = [s], {}, []
        for t in range(1, steps + 1):
            env = self.base(t) | self.split(states[-1][:, None])
            eqs = self.state_eqs + (self.output_eqs if t in self.cell.loss_steps(steps) else ())
            self.run(env, eqs)
            states.append(self.stack(env)[:, 0])
            if t in self.cell.loss_steps(steps):
                losses[t] = float(env[naming.step_name(self.cell.loss, "t")][0, 0].real)
            envs.append(env)
        return Forward(np.array(states), losses, tuple(envs))

    def step_jacobian(self, t: int, s_prev: Array) -> Array:
        """A_t = ds_t/ds_{t-1} at s_{t-1} (n_s x n_s, numerator layout), by the complex step."""
        env = self.base(t) | self.split(_perturbed(s_prev))
        return self.stack(self.run(env, self.state_eqs)).imag / COMPLEX_STEP

    def loss_gradient(self, env_T: Mapping[str, Array], s_T: Array) -> Array:
        """g_T = dJ_T/ds_T: the outputs of step T recomputed from s_T, every other node held."""
        env = dict(env_T) | self.split(_perturbed(s_T), "t")
        self.run(env, self.output_eqs)
        return env[naming.step_name(self.cell.loss, "t")][0].imag / COMPLEX_STEP

    def total_loss_gradient(self, steps: int, s_prev: Array) -> Array:
        """dJ_T/ds_{T-1} through the whole of step T (the direct paths of its outputs included)."""
        env = self.base(steps) | self.split(_perturbed(s_prev))
        self.run(env, self.state_eqs + self.output_eqs)
        return env[naming.step_name(self.cell.loss, "t")][0].imag / COMPLEX_STEP


def _perturbed(s: Array) -> Array:
    """n_s copies of s as columns, column j with i eps added to entry j: s 1^T + i eps I."""
    n = len(s)
    return s[:, None] + 1j * COMPLEX_STEP * np.eye(n)


def forward(cell: Cell, problem: Problem) -> Forward:
    """Run the cell over the problem's sequence."""
    return Stepper(cell, problem).forward()
