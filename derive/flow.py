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

The derivatives are by the complex step: for an analytic f, f'(a) = Im f(a + i eps) / eps
+ O(eps^2), with no difference of nearly equal numbers, so with eps = COMPLEX_STEP = 1e-20
the Jacobians are exact to float64 rounding (relative ~1e-15, against ~1e-8 for central
differences).  All n_s columns of A_t come from one batched evaluation of the step, on an
(n, n_s) block of perturbed copies of s_{t-1}.  The evaluator below keeps every operation
analytic for that: sigmoid(a) = (1 + tanh(a / 2)) / 2, softmax and log-softmax shift by the
maximum of the real part, and relu and step branch on the real part (their derivative is
taken as 0 at 0, as in the generated modules).

The sequence (``make_problem``): the generated modules' init_params, N(0, 1/fan_in), with the
recurrent weights (those multiplying a previous state) times ``scale``, or given parameters;
inputs and real targets from N(0, 1), class labels uniform, zero initial states; n_x = n_y = 8,
n_h = 32 unless ``sizes`` says otherwise.  The evaluator walks the cell's SymPy expressions
(``evaluate``); it never prints code or calls eval, exec or lambdify.  ``plot`` draws both
norms against time for a few scales of the recurrent weights.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from . import naming
from .cell import Cell, dim_symbol, recurrent_params
from .exprs import CrossEntropy, Diag, Elementwise, Hadamard, Softmax, SoftmaxCrossEntropy, SquaredError
from .render import MARK, write_atomic

COMPLEX_STEP = 1e-20  # eps of the complex step: its truncation error, eps^2 |f'''|, is far below float64 rounding
FLOW_MIN_STEPS = 30  # the plot shows a trend only over enough steps
DEFAULT_SIZES = {"x": 8, "h": 32, "y": 8}  # any other dimension: n_h + 1, n_h + 2, ... (as verify.random_problem)
DEFAULT_SCALES = (0.5, 1.0, 2.0, 4.0)  # vanishing, the edge, and two that grow for a tanh RNN
FIGSIZE_INCHES = (12.0, 4.5)
DPI = 100  # FIGSIZE_INCHES * DPI = a PNG of 1200 x 450 pixels
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

Array = np.ndarray


def flow_steps(steps: int) -> int:
    """The T to plot the flow at: at least FLOW_MIN_STEPS, so that a trend shows."""
    return max(steps, FLOW_MIN_STEPS)


# ---- the evaluator ----------------------------------------------------------------------


def _log_softmax(y: Array) -> Array:
    """log softmax(y) of every column: s - log(sum(exp(s))) with s = y - max(Re y)."""
    s = y - y.real.max(axis=0, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=0, keepdims=True))


def _cross_entropy(logp: Array, target: Array) -> Array:
    """-target^T log p per column (1, B); 0 log 0 counts as 0."""
    with np.errstate(invalid="ignore"):
        terms = np.where(target != 0, target * logp, 0.0)
    return -terms.sum(axis=0, keepdims=True)


def _matmul(a: Array, b: Array) -> Array:
    """a @ b, a complex operand split into its real and imaginary parts: real products only
    (NumPy's complex product of small blocks was 1000 times slower here, in OpenBLAS threads)."""
    if not (np.iscomplexobj(a) or np.iscomplexobj(b)):
        return a @ b
    if not np.iscomplexobj(a):
        return a @ b.real + 1j * (a @ b.imag)
    if not np.iscomplexobj(b):
        return a.real @ b + 1j * (a.imag @ b)
    return a.real @ b.real - a.imag @ b.imag + 1j * (a.real @ b.imag + a.imag @ b.real)


class Evaluator:
    """Evaluates a cell's expressions on NumPy values.

    A vector is an (n, B) array: B columns evaluated at once (B = 1 for one sequence, B = n_s
    for the complex-step Jacobians).  ``sizes`` gives every dimension by name ("h": 32);
    ``softmax_args`` maps a node defined as softmax(a) (``"p@t"``) to a, so that a cross-entropy
    of it is computed from the logits, as the generated modules do.
    """

    def __init__(self, sizes: Mapping[str, int], softmax_args: Mapping[str, sp.Basic] | None = None) -> None:
        self.sizes = {dim_symbol(d): int(n) for d, n in sizes.items()}
        self.softmax_args = dict(softmax_args or {})

    def size(self, dim: sp.Basic) -> int:
        if isinstance(dim, sp.Integer):
            return int(dim)
        if dim in self.sizes:
            return self.sizes[dim]
        raise ValueError(f"no size for the dimension {dim}")

    def __call__(self, expr: sp.Basic, env: Mapping[str, Array]) -> Any:
        """The value of ``expr``: an array, or a Python float for a number."""
        if expr.is_Number:
            return float(expr)
        if isinstance(expr, sp.MatrixSymbol):
            try:
                return env[expr.name]
            except KeyError:
                raise KeyError(f"no value for {expr.name}") from None
        if isinstance(expr, sp.MatAdd):
            total = self(expr.args[0], env)
            for arg in expr.args[1:]:
                total = total + self(arg, env)
            return total
        if isinstance(expr, sp.MatMul):
            coeff, out = 1.0, None
            for arg in expr.args:
                value = self(arg, env)
                if isinstance(value, float):
                    coeff *= value
                else:
                    out = value if out is None else _matmul(out, value)
            if out is None:
                raise NotImplementedError(f"a matrix product of numbers only: {expr}")
            return out if coeff == 1.0 else coeff * out
        if isinstance(expr, sp.Transpose):
            value = self(expr.arg, env)
            if expr.arg.shape[1] == 1 and value.shape[1] != 1:
                raise NotImplementedError(f"the transpose of a vector evaluated on several columns at once: {expr}")
            return value.T
        if isinstance(expr, (Hadamard, sp.HadamardProduct)):
            out = self(expr.args[0], env)
            for arg in expr.args[1:]:
                out = out * self(arg, env)
            return out
        if isinstance(expr, sp.HadamardPower):
            return self(expr.base, env) ** float(expr.exp)
        if isinstance(expr, sp.OneMatrix):
            return np.ones(tuple(self.size(d) for d in expr.shape))
        if isinstance(expr, sp.ZeroMatrix):
            return np.zeros(tuple(self.size(d) for d in expr.shape))
        if isinstance(expr, sp.Identity):
            return np.eye(self.size(expr.shape[0]))
        if isinstance(expr, Elementwise):
            return expr.op.numeric(self(expr.arg, env))
        if isinstance(expr, Softmax):
            return np.exp(_log_softmax(self(expr.arg, env)))
        if isinstance(expr, SoftmaxCrossEntropy):
            return _cross_entropy(_log_softmax(self(expr.logits, env)), self(expr.target, env))
        if isinstance(expr, CrossEntropy):
            return _cross_entropy(self._log_p(expr.p, env), self(expr.target, env))
        if isinstance(expr, SquaredError):
            d = self(expr.y, env) - self(expr.target, env)
            return 0.5 * (d * d).sum(axis=0, keepdims=True)
        if isinstance(expr, Diag):
            v = self(expr.arg, env)
            if v.shape[1] != 1:
                raise NotImplementedError("Diag of several columns at once")
            return np.diagflat(v)
        raise NotImplementedError(f"flow: no numeric evaluation for {type(expr).__name__} ({expr})")

    def _log_p(self, p: sp.Basic, env: Mapping[str, Array]) -> Array:
        """log p for a cross-entropy, from the logits when p is a softmax."""
        if isinstance(p, Softmax):
            return _log_softmax(self(p.arg, env))
        if isinstance(p, sp.MatrixSymbol) and p.name in self.softmax_args:
            return _log_softmax(self(self.softmax_args[p.name], env))
        with np.errstate(divide="ignore"):
            return np.log(self(p, env))


def evaluate(expr: sp.Basic, env: Mapping[str, Array], sizes: Mapping[str, int]) -> Any:
    """The value of one cell expression; ``env`` maps symbol names (``"W_hh"``, ``"h@t-1"``) to
    (n, B) arrays (a parameter vector as an (n, 1) column), ``sizes`` every dimension by name."""
    return Evaluator(sizes)(expr, env)


# ---- one sequence -----------------------------------------------------------------------


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
    initial = {s.name: np.zeros(full[s.dim]) for s in cell.states}
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
        softmax_args = {
            naming.step_name(eq.name, "t"): eq.rhs.arg for eq in cell.equations if isinstance(eq.rhs, Softmax)
        }
        self.evaluate = Evaluator(problem.sizes, softmax_args)
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
        return np.concatenate([env[naming.step_name(s.name, "t")] for s in self.cell.states], axis=0)

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
        s = np.concatenate([np.asarray(self.problem.initial[st.name], np.float64) for st in self.cell.states])
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


# ---- the flow ---------------------------------------------------------------------------


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


# ---- the picture ------------------------------------------------------------------------


def _plottable(values: Array) -> tuple[Array, int]:
    """The values with zero, negative and non-finite entries as nan (a log axis cannot show
    them), and how many there were."""
    ok = np.isfinite(values) & (values > 0)
    return np.where(ok, values, np.nan), int(np.count_nonzero(~ok))


def _legend(flow: Flow, hidden: int) -> str:
    if flow.overflow is not None:
        return f"{flow.label} (the state overflows at step {flow.overflow})"
    return flow.label if not hidden else f"{flow.label} ({hidden} not shown: zero or not finite)"


def _text(text: str) -> str:
    """User text (a cell's title) as plain text for matplotlib: a "$" would start mathtext."""
    return text.replace("$", r"\$")


def _caption(flows: Sequence[Flow]) -> str:
    first = flows[0]
    sizes = ", ".join(f"$n_{{{d}}} = {n}$" for d, n in first.sizes.items())
    stacked = f"$s = [{'; '.join(first.states)}]$" if len(first.states) > 1 else f"$s = {first.states[0]}$"
    if first.params_given:
        how = "given parameters"
    elif not first.recurrent:
        how = "$\\mathcal{N}(0, 1/\\mathrm{fan\\_in})$; no recurrent weight to scale"
    else:
        weights = ", ".join(first.recurrent)
        how = f"$\\mathcal{{N}}(0, 1/\\mathrm{{fan\\_in}})$, recurrent weights ({weights}) $\\times$ scale"
    return f"{stacked}; {sizes}; seed {first.seed}; {how}; $A_j = \\partial s_j / \\partial s_{{j-1}}$"


def render_png(flows: Sequence[Flow]) -> bytes:
    """The two-panel figure as PNG bytes, FIGSIZE_INCHES * DPI pixels, the same bytes every run."""
    if not flows:
        raise ValueError("flows: expected at least one Flow")
    # matplotlib only here: importing it takes half a second that gradient_flow does not need
    import matplotlib

    with matplotlib.rc_context():  # matplotlib's own defaults, whatever the user's matplotlibrc says
        matplotlib.rcdefaults()
        return _render_png(flows)


def _render_png(flows: Sequence[Flow]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    fig = Figure(figsize=FIGSIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    shown = {left: 0, right: 0}  # the points a log axis can draw, by panel
    for i, flow in enumerate(flows):
        style = {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)], "markersize": 3.5}
        k = np.arange(flow.steps + 1)
        grad, g_off = _plottable(np.asarray(flow.grad_norm))
        jac, j_off = _plottable(np.asarray(flow.jacobian_norm))
        left.plot(k, grad, label=_legend(flow, g_off), **style)
        right.plot(flow.steps - k, jac, label=_legend(flow, j_off), **style)
        shown[left] += grad.size - g_off
        shown[right] += jac.size - j_off
    longest = max(f.steps for f in flows)
    for ax in (left, right):
        ax.set_xlim(-0.02 * longest - 0.5, 1.02 * longest + 0.5)  # also when no point can be drawn
        if not shown[ax]:  # a log axis with nothing on it cannot scale itself: say so instead
            ax.set_ylim(1e-16, 1e1)
            ax.text(0.5, 0.5, "every value is zero or not finite", transform=ax.transAxes, ha="center")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small")
    left.set_xlabel("$k$")
    left.set_ylabel(r"$\Vert\, \partial J_T / \partial s_k \,\Vert_2$")
    left.set_title("gradient of the last loss $J_T$ with respect to the state $s_k$")
    right.set_xlabel("$T - k$ (steps back)")
    right.set_ylabel(r"$\Vert\, \partial s_T / \partial s_k \,\Vert_2$")
    right.set_title(r"spectral norm of $\partial s_T / \partial s_k = A_T A_{T-1} \cdots A_{k+1}$")
    names = dict.fromkeys(_text(f"{f.cell}: {f.title}") for f in flows)
    lengths = dict.fromkeys(str(f.steps) for f in flows)
    fig.suptitle(f"Gradient flow back in time: {', '.join(names)}, $T = {', '.join(lengths)}$\n{_caption(flows)}")
    buffer = io.BytesIO()
    full = Bbox.from_bounds(0, 0, *FIGSIZE_INCHES)  # the whole figure, whatever savefig.bbox says
    # no Software (matplotlib's version) in the file; the mark lets an overwrite check know the PNG is ours
    metadata = {"Software": None, "Comment": MARK}
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=full, metadata=metadata)
    return buffer.getvalue()


def plot(flows: Sequence[Flow], path: Path) -> None:
    """Write the figure of ``flows`` to ``path`` (PNG), atomically; the folder is created."""
    data = render_png(flows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
