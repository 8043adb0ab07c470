"""``bptt check``: the problems a user's code is called on, and the cell's own answers to them.

A problem is a seeded batch of B random sequences of T steps in float64.  Loss functions are
called on one sequence (B = 1) with one-hot inputs, as min-char-rnn takes them; layers on a
batch of real-valued inputs, with B and every size distinct (``LAYER_SIZES``), so that an
array's layout can be read off its shape.  The right answers are the derived module's (the
yardstick ``bptt verify`` checks) and, for what a module does not return (the states of every
step, the gradient of the inputs), the numeric evaluator's, by the complex step.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np

from derive.ir import naming
from derive.ir.cell import Cell
from derive.verify.evaluator import Evaluator

SEED = 20261129
LOSS_SIZES = {"x": 4, "h": 5, "y": 4}  # min-char-rnn reads one vocabulary for inputs and outputs
LAYER_SIZES = ({"x": 4, "h": 5, "y": 6}, {"x": 4, "h": 5, "y": 4})  # the second for code whose output is x's size
LAYER_BATCH = 7  # apart from every size and from the probe's T, so a layout shows in a shape
PROBE_STEPS = 3  # the T at which conventions are found
COMPLEX_STEP = 1e-20

Grads = dict[str, np.ndarray]


@dataclass
class Problem:
    """B sequences of T steps: the cell's parameters (cell shapes), the inputs (T, B, n_x) (one-hot
    rows of ``ints`` where those are given), the targets ((T, B) class indices or (T, B, n)
    reals) and an initial value (B, n) for each state, in the cell's order."""

    params: dict[str, np.ndarray]
    xs: np.ndarray
    targets: np.ndarray
    initial: list[np.ndarray]
    ints: np.ndarray | None = None  # (T, B)

    @property
    def steps(self) -> int:
        return self.xs.shape[0]

    @property
    def batch(self) -> int:
        return self.xs.shape[1]

    @property
    def inputs(self) -> list[int]:
        """The first sequence's inputs as ints (min-char-rnn's form)."""
        assert self.ints is not None
        return [int(i) for i in self.ints[:, 0]]

    @property
    def labels(self) -> list[int]:
        """The first sequence's class targets as ints."""
        return [int(i) for i in self.targets[:, 0]]

    def starting_at_zero(self) -> Problem:
        """The same problem with every initial state zero."""
        zeros = [np.zeros_like(v) for v in self.initial]
        return Problem(self.params, self.xs, self.targets, zeros, self.ints)


def _sizes(cell: Cell, base: dict[str, int]) -> dict[str, int]:
    """``base`` for x, h, y, and 7, 8, ... for the cell's other dimensions."""
    others = iter(range(max(base.values()) + 2, 100))
    return {d: base.get(d, 0) or next(others) for d in cell.dims}


def make_problem(
    cell: Cell,
    steps: int,
    rng: np.random.Generator,
    *,
    layer: bool,
    base: dict[str, int] | None = None,
    batch: int | None = None,
) -> Problem:
    """One seeded problem: for a loss function, one sequence of one-hot inputs; for a layer, a batch
    of ``batch`` (LAYER_BATCH) sequences of real inputs, of sizes ``base`` (the first of LAYER_SIZES)."""
    sizes = _sizes(cell, base or (LAYER_SIZES[0] if layer else LOSS_SIZES))
    batch = batch or (LAYER_BATCH if layer else 1)
    params = {}
    for p in cell.params:
        shape = tuple(sizes[d] for d in p.shape)
        params[p.name] = 0.8 * rng.standard_normal(shape) / np.sqrt(shape[-1])
    n_x = sizes[cell.inputs[0].dim]
    ints = None
    if layer:
        xs = rng.standard_normal((steps, batch, n_x))
    else:
        ints = rng.integers(0, n_x, (steps, batch))
        xs = np.eye(n_x)[ints]
    target = cell.targets[0]
    n_t = sizes[target.dim]
    targets: np.ndarray
    if target.kind == "class":
        targets = rng.integers(0, n_t, (steps, batch))
    else:
        targets = rng.standard_normal((steps, batch, n_t))
    initial = [0.5 * rng.standard_normal((batch, sizes[s.dim])) for s in cell.states]
    return Problem(params, xs, targets, initial, ints)


def problems(cell: Cell, steps: tuple[int, ...], *, layer: bool = False, seed: int = SEED) -> list[Problem]:
    rng = np.random.default_rng(seed)
    return [make_problem(cell, t, rng, layer=layer) for t in steps]


def derived_answer(module: types.ModuleType, problem: Problem, cell: Cell) -> tuple[float, Grads]:
    """A generated module's loss and gradients (of the parameters and the initial states)."""
    params = {k: v for k, v in problem.params.items() if k in cell.param_names}
    loss, grads = module.loss_and_gradients(params, problem.xs, problem.targets, *problem.initial)
    return float(loss), dict(grads)


def step_values(
    cell: Cell, problem: Problem, xs: np.ndarray | None = None, *, loss: bool = False
) -> list[dict[str, np.ndarray]]:
    """The values of each step t = 1..T by step-relative name (``x@t``, ``h@t-1``, ``h@t``, the
    parameters), as (n, B) columns, by the numeric evaluator of the cell's equations; with ``loss``
    the targets and the loss too.  ``xs`` in place of the problem's (complex, for the complex step)."""
    xs = problem.xs if xs is None else xs
    sizes = cell.sizes(problem.params)
    evaluator = Evaluator(sizes)
    params = {k: v.reshape(v.shape[0], -1) for k, v in problem.params.items() if k in cell.param_names}
    equations = [eq for eq in cell.equations if loss or eq.name != cell.loss]
    x_name, target = naming.step_name(cell.inputs[0].name, "t"), cell.targets[0]
    previous = {s.name: v.T for s, v in zip(cell.states, problem.initial)}
    steps = []
    for t in range(xs.shape[0]):
        env = {**params, x_name: xs[t].T, **{naming.step_name(s, "t-1"): v for s, v in previous.items()}}
        if loss:  # class indices as one-hot columns
            rows = problem.targets[t]
            env[naming.step_name(target.name, "t")] = np.eye(sizes[target.dim])[rows].T if rows.ndim == 1 else rows.T
        for eq in equations:
            env[naming.step_name(eq.name, "t")] = evaluator(eq.rhs, env)
        previous = {s.name: env[naming.step_name(s.name, "t")] for s in cell.states}
        steps.append(env)
    return steps


def forward_values(cell: Cell, problem: Problem, xs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every node but the loss at steps 1..T, (T, B, n) each (``step_values``, stacked)."""
    steps = step_values(cell, problem, xs)
    names = [eq.name for eq in cell.equations if eq.name != cell.loss]
    return {n: np.stack([env[naming.step_name(n, "t")].T for env in steps]) for n in names}


def readout_loss(cell: Cell, problem: Problem, node: str, xs: np.ndarray | None = None) -> complex:
    """J = sum over t and the batch of (1/2) |v_t - r_t|^2 for the node ``node``: the loss a layer
    is checked under, its upstream gradient v_t - r_t."""
    d = forward_values(cell, problem, xs)[node] - problem.targets
    return complex(0.5 * (d * d).sum())


def input_gradient(cell: Cell, problem: Problem, node: str) -> np.ndarray:
    """dJ/dx of ``readout_loss`` at every step and sequence, (T, B, n_x), by the complex step
    through the evaluator: exact to rounding, one forward run per input entry."""
    grad = np.zeros(problem.xs.shape)
    for index in np.ndindex(*problem.xs.shape):
        xs = problem.xs.astype(complex)
        xs[index] += COMPLEX_STEP * 1j
        grad[index] = readout_loss(cell, problem, node, xs).imag / COMPLEX_STEP
    return grad
