"""Stage 8: check the generated gradients against three things we did not generate.

1. ``reference``: a hand-written min-char-rnn-style loop (``derive.verify.oracles.rnn``);
2. central finite differences of the generated ``loss`` (its value checked
   against the reference loop's);
3. exact ``sympy.diff`` of the fully scalar unrolled loss, built here from the
   cell's equations with explicit matrices of scalar symbols: SymPy's own
   derivatives of tanh, exp and log, none of our rule table.

The error measure is ``max|a - b| / max(max|b|, floor)``: the largest
deviation relative to the largest entry of the trusted value, with the floor
SCALE_FLOOR, or FD_SCALE_FLOOR against finite differences (whose noise is absolute).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from derive.derivation.unroll import at_step
from derive.ir import naming
from derive.ir.cell import Cell, dim_symbol, load_builtin
from derive.ir.exprs import (
    BinaryCrossEntropy,
    CrossEntropy,
    Elementwise,
    Hadamard,
    LogSoftmax,
    Softmax,
    SquaredError,
    Sum,
    is_scalar,
    valued,
)
from derive.verify.oracles.elman import reference_elman
from derive.verify.oracles.gru import reference_gru
from derive.verify.oracles.lstm import reference_lstm
from derive.verify.oracles.rnn import reference_loss_and_gradients

SCALE_FLOOR = 1e-8
# central differences carry an absolute noise of about eps_machine * |J| / FD_EPS ~ 1e-10 whatever the
# gradient's size, so against them a vanishing gradient (|b| ~ 1e-5 after a few sigmoid steps) is
# measured relative to at least this scale: an absolute error of 1e-8 passes RTOL_FD
FD_SCALE_FLOOR = 1e-2
RTOL_EXACT = 1e-10  # against the reference loop and SymPy: float64 rounding only
RTOL_FD = 1e-6  # against central differences with FD_EPS: truncation and cancellation
# a float32 run against the float64 one: single-precision rounding (eps 6e-8) grown through T steps and
# sums over T * B rows (tests/emit/numpy/test_float32.py holds every cell to it at T = 5, B = 3)
RTOL_FLOAT32 = 1e-4
FD_EPS = 1e-6
SEED = 20261129

# sizes: (n_x, n_h, n_y, B) for the numeric checks, and the tiny ones for SymPy
NUMERIC_SIZES = (3, 4, 5, 2)
SYMPY_SIZES = (2, 2, 3)
SYMPY_MAX_STEPS = 6  # the scalar unrolled loss, and the time to differentiate it, grow fast with T

GradFn = Callable[..., tuple[float, dict[str, np.ndarray]]]

# hand-written reference loops for built-in cells, each written independently of the generator
REFERENCES: dict[str, GradFn] = {
    "rnn": reference_loss_and_gradients,
    "elman": reference_elman,
    "gru": reference_gru,
    "lstm": reference_lstm,
}


def load_module(source: str, name: str) -> types.ModuleType:
    """Import generated source (our own output, never user text) as a module."""
    module = types.ModuleType(name)
    module.__file__ = f"<generated {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def max_rel_error(a: np.ndarray | float, b: np.ndarray | float, floor: float = SCALE_FLOOR) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), floor))


def distinct_sizes(module: types.ModuleType, smallest: int) -> dict[str, int]:
    """A size for every dimension of the module, each different from the others: smallest, smallest + 1, ..."""
    return {d: smallest + i for i, d in enumerate(module.DIMS)}


def in_dtype(value: Any, dtype: type) -> Any:
    """A problem (or a part of one: a tuple, a dict, an array) with its floating arrays in ``dtype``."""
    if isinstance(value, (tuple, list)):
        return type(value)(in_dtype(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: in_dtype(v, dtype) for k, v in value.items()}
    return value.astype(dtype) if isinstance(value, np.ndarray) and value.dtype.kind == "f" else value


def random_problem(
    module: types.ModuleType,
    steps: int,
    sizes: tuple[int, ...] | Mapping[str, int],
    seed: int = SEED,
    batch: int | None = None,
):
    """(params, xs, targets, *initial states), seeded.  ``sizes`` gives every dimension by name
    (``n_h``), or n_x, n_h, n_y, with any other dimension taking a size of its own (n_h + 1,
    n_h + 2, ...), so that a transposition between two dimensions shows as a shape error rather
    than hiding behind equal sizes."""
    if isinstance(sizes, Mapping):
        dims = [sizes[d] for d in module.DIMS]
    else:
        n_x, n_h, n_y = sizes[:3]
        by_dim = {"n_x": n_x, "n_h": n_h, "n_y": n_y}
        others = iter(range(n_h + 1, n_h + 1 + len(module.DIMS)))
        dims = [by_dim[d] if d in by_dim else next(others) for d in module.DIMS]
    rng = np.random.default_rng(seed)
    params = {k: 0.8 * v for k, v in module.init_params(*dims, seed=seed).items()}
    sizes_of = dict(zip(module.DIMS, dims))
    lead = (steps,) if batch is None else (steps, batch)
    xs: dict[str, np.ndarray] = {name: rng.standard_normal(lead + (sizes_of[n],)) for name, n in module.INPUTS.items()}
    per = lead[1:] if module.LOSS_AT == "last" else lead  # many-to-one: one target per sequence
    targets: dict[str, np.ndarray] = {
        name: rng.integers(0, sizes_of[n], per) if kind == "class" else rng.standard_normal(per + (sizes_of[n],))
        for name, (kind, n) in module.TARGETS.items()
    }
    initial = [0.5 * rng.standard_normal(lead[1:] + (sizes_of[dim],)) for dim in module.INITIAL.values()]
    # one input (target) is passed as the array itself, several as a dict by name
    return (params, _one_or_dict(xs), _one_or_dict(targets), *initial)


def _one_or_dict(arrays: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _by_name(value, vectors) -> dict[str, np.ndarray]:
    """The arrays of ``xs`` (or the targets) by name, whether passed as one array or as a dict."""
    return value if isinstance(value, dict) else {vectors[0].name: value}


def finite_differences(
    loss: Callable[..., float], params, xs, labels, *initial, names: tuple[str, ...] = ("h0",), eps: float = FD_EPS
) -> dict[str, np.ndarray]:
    """Central differences of ``loss(params, xs, labels, *initial)`` with respect to every parameter
    and every initial state (``names`` gives their keys: h0, c0, ...)."""
    grads = {}
    values = dict(params) | dict(zip(names, initial, strict=True))
    for name, value in values.items():
        g = np.zeros_like(value, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            shifted = {}
            for sign in (1, -1):
                v = np.array(value, dtype=np.float64)
                v[idx] += sign * eps
                args = dict(values, **{name: v})
                states = [args.pop(n) for n in names]
                shifted[sign] = loss(args, xs, labels, *states)
            g[idx] = (shifted[1] - shifted[-1]) / (2 * eps)
        grads[name] = g
    return grads


# ---- exact SymPy differentiation of the scalar unrolled loss ---------------------------


def _explicit(expr: sp.Basic, env: dict[str, sp.Matrix], sizes: dict[sp.Symbol, int]) -> sp.Matrix:
    """Evaluate a cell expression on explicit matrices of scalars; ``sizes`` gives each dimension."""
    if isinstance(expr, sp.MatrixSymbol):
        return env[expr.name]
    if isinstance(expr, sp.MatAdd):
        out = _explicit(expr.args[0], env, sizes)
        for arg in expr.args[1:]:
            out = out + _explicit(arg, env, sizes)
        return out
    if isinstance(expr, sp.MatMul):
        out = _explicit(expr.args[0], env, sizes) if not is_scalar(expr.args[0]) else valued(expr.args[0])
        for arg in expr.args[1:]:
            out = out * _explicit(arg, env, sizes)
        return out
    if isinstance(expr, sp.OneMatrix):
        return sp.ones(*[int(sizes.get(n, n)) for n in expr.shape])
    if isinstance(expr, sp.Transpose):  # a tied weight, E^T: the same scalar unknowns, transposed
        return _explicit(expr.arg, env, sizes).T
    if isinstance(expr, Hadamard):
        a, b = (_explicit(arg, env, sizes) for arg in expr.args)
        return a.multiply_elementwise(b)
    if isinstance(expr, Elementwise):
        return _explicit(expr.arg, env, sizes).applyfunc(expr.op.scalar)
    if isinstance(expr, SquaredError):
        diff = _explicit(expr.y, env, sizes) - _explicit(expr.target, env, sizes)
        return sp.Matrix([[sum(d**2 for d in diff) / 2]])
    if isinstance(expr, Softmax):
        e = _explicit(expr.arg, env, sizes).applyfunc(sp.exp)
        return e / sum(e)
    if isinstance(expr, CrossEntropy):
        p, onehot = _explicit(expr.p, env, sizes), _explicit(expr.target, env, sizes)
        return sp.Matrix([[-sum(li * sp.log(pi) for li, pi in zip(onehot, p))]])
    if isinstance(expr, BinaryCrossEntropy):
        p, r = _explicit(expr.p, env, sizes), _explicit(expr.target, env, sizes)
        return sp.Matrix([[-sum(ri * sp.log(pi) + (1 - ri) * sp.log(1 - pi) for ri, pi in zip(r, p))]])
    if isinstance(expr, Sum):
        return sp.Matrix([[sum(_explicit(expr.arg, env, sizes))]])
    if isinstance(expr, LogSoftmax):
        a = _explicit(expr.arg, env, sizes)
        total = sp.log(sum(a.applyfunc(sp.exp)))
        return a.applyfunc(lambda v: v - total)
    raise NotImplementedError(f"no explicit evaluation for {type(expr).__name__}")


def sympy_gradients(
    cell: Cell, params, xs, labels, *initial, truncate: int | None = None
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of one sequence by SymPy, independent of the rule table.

    The unrolled loss is built on scalar symbols.  For a cell without gates (no
    elementwise products) that reads each previous state once, it is differentiated whole:
    ``sympy.diff`` of the fully scalar unrolled loss with respect to every weight.  Other
    cells' unrolled losses swell past what SymPy differentiates in minutes (a GRU at T = 2:
    220 s; a residual h[t-1] + tanh(... h[t-1]) at T = 4: 16 s), so there SymPy
    differentiates each scalar operation and the chain rule runs over the scalar graph
    in 30-digit arithmetic: the same numbers, without the swell.

    With ``truncate`` = K the gradient is truncated BPTT's: the chain rule from each J_s runs
    through the scalar graph of steps s, s-1, ..., s-K+1 only, older nodes held constant.
    """
    env: dict[str, sp.Matrix] = {}
    unknowns: dict[str, sp.Matrix] = {}
    for p in cell.params:
        shape = np.shape(params[p.name])
        rows, cols = shape if len(shape) == 2 else (shape[0], 1)
        unknowns[p.name] = sp.Matrix(rows, cols, lambda i, j, n=p.name: sp.Symbol(f"{n}_{i}_{j}"))
    env.update(unknowns)
    given = {}  # initial state arguments (h0, c0) by key
    for delay in cell.delays:  # h_{-1}, x_0: zeros
        env[naming.step_name(delay.name, 0)] = sp.zeros(cell.sizes(params)[delay.dim], 1)
    for state, value in zip(cell.declared_states, initial, strict=True):
        key = naming.initial_arg(state.name)
        given[key] = value
        unknowns[key] = sp.Matrix(len(value), 1, lambda i, j, k=key: sp.Symbol(f"{k}_{i}"))
        env[naming.step_name(state.name, 0)] = unknowns[key]
    sizes_of = cell.sizes(params)
    sizes = {dim_symbol(d): n for d, n in cell.sizes(params).items()}
    graph: list[tuple[sp.Symbol, sp.Expr]] = []  # each scalar of each unrolled node, in evaluation order
    losses: list[sp.Symbol] = []
    steps = len(next(iter(_by_name(xs, cell.inputs).values())))
    inputs, given_targets = _by_name(xs, cell.inputs), _by_name(labels, cell.targets)
    for t in range(1, steps + 1):
        for v in cell.inputs:
            env[naming.step_name(v.name, t)] = sp.Matrix([sp.Float(x, 30) for x in inputs[v.name][t - 1]])
        if t in cell.loss_steps(steps):
            for target in cell.targets:
                value = given_targets[target.name]
                label = value if cell.loss_mode == "last" else value[t - 1]
                if target.kind == "class":
                    column = [sp.S.One if i == label else sp.S.Zero for i in range(sizes_of[target.dim])]
                else:
                    column = [sp.Float(x, 30) for x in label]
                env[naming.step_name(target.name, t)] = sp.Matrix(column)
        for eq in cell.computed_at(t, steps):
            local = _explicit(at_step(eq.rhs, t), env, sizes)
            names = sp.Matrix(*local.shape, lambda i, j, n=eq.name, t=t: sp.Symbol(f"{n}@{t}_{i}_{j}"))
            graph += list(zip(names, local))
            env[naming.step_name(eq.name, t)] = names
        if t in cell.loss_steps(steps):
            losses.append(env[naming.step_name(cell.loss, t)][0, 0])
    values = {s: v for name, m in unknowns.items() for s, v in zip(m, np.ravel(given.get(name, params.get(name))))}
    symbols = list(values)
    if truncate is None and not _swells(cell):
        total = sp.Add(*losses)
        for sym, local in reversed(graph):  # inline the graph into one expression of the unknowns
            total = total.xreplace({sym: local})
        f = sp.lambdify(symbols, [total] + [sp.diff(total, s) for s in symbols], modules="numpy", cse=True)
        out = f(*[float(values[s]) for s in symbols])
        loss, flat = float(out[0]), np.array(out[1:], dtype=np.float64)
    else:
        loss, flat = _graph_gradients(
            graph, losses, {s: sp.Float(float(v), 30) for s, v in values.items()}, symbols, truncate
        )
    grads, i = {}, 0
    for name in unknowns:
        shape = np.shape(given[name] if name in given else params[name])
        size = int(np.prod(shape))
        grads[name] = flat[i : i + size].reshape(shape)
        i += size
    return loss, grads


def _swells(cell: Cell) -> bool:
    """Whether the inlined scalar loss grows too fast for a whole ``sympy.diff``: a gated cell
    (elementwise products), or one that reads a previous state more than once (a residual
    h = h[t-1] + f(h[t-1]) doubles the expression at every step)."""
    if any(eq.rhs.has(Hadamard) for eq in cell.equations):
        return True
    if any(eq.rhs.has(Softmax) for eq in cell.equations if eq.name not in cell.outputs):
        return True  # a softmax that feeds the next step (a Jordan network): each entry reads every logit
    reads = [s for eq in cell.equations for s in sp.preorder_traversal(eq.rhs) if isinstance(s, sp.MatrixSymbol)]
    return any(sum(1 for s in reads if s.name == naming.step_name(v.name, "t-1")) > 1 for v in cell.states)


def _graph_gradients(graph, losses, values, symbols, truncate: int | None = None) -> tuple[float, np.ndarray]:
    """Reverse accumulation over the scalar graph; each local derivative by ``sympy.diff``.

    Without truncation one pass carries every loss back at once; with it, one pass per loss
    J_s that stops at the nodes of step s - K (whose values it holds constant)."""
    known = dict(values)
    for sym, local in graph:
        known[sym] = local.xreplace(known).evalf(30)
    step = {sym: naming.step_of(str(sym).rsplit("_", 2)[0]) for sym, _ in graph}  # "h@3_0_0" -> 3
    passes = [(losses, 0)] if truncate is None else [([j], step[j] - truncate + 1) for j in losses]
    total: dict[sp.Symbol, sp.Expr] = {}
    for tops, lowest in passes:
        adjoint: dict[sp.Symbol, sp.Expr] = {s: sp.S.One for s in tops}
        for sym, local in reversed(graph):
            a = adjoint.get(sym)
            if a is None or step[sym] < lowest:
                continue
            for v in sorted(local.free_symbols, key=str):  # a fixed order: the same digits every run
                adjoint[v] = adjoint.get(v, sp.S.Zero) + a * sp.diff(local, v).xreplace(known).evalf(30)
        for s in symbols:
            total[s] = total.get(s, sp.S.Zero) + adjoint.get(s, sp.S.Zero)
    loss = float(sp.Add(*[known[s] for s in losses]))
    return loss, np.array([float(total[s]) for s in symbols], dtype=np.float64)


# ---- the report ------------------------------------------------------------------------

CHECKS = ("reference", "finite differences", "sympy")
TOLERANCE = {"reference": RTOL_EXACT, "finite differences": RTOL_FD, "sympy": RTOL_EXACT}
IMPLEMENTATIONS = ("loss_and_gradients", "gradients_by_definition")


@dataclass(frozen=True)
class Report:
    """errors[(implementation, check)][wrt] = max relative error; "loss" is a row too."""

    cell: str
    steps: int
    rows: tuple[str, ...]
    errors: dict[tuple[str, str], dict[str, float]]
    truncate: int | None = None
    by_definition: bool = True  # whether the module has gradients_by_definition

    def error(self, impl: str, check: str, row: str) -> float | None:
        """The measured error, or None where the check was not run (SymPy beyond SYMPY_MAX_STEPS)."""
        return self.errors.get((impl, check), {}).get(row)

    def failures(self) -> list[str]:
        out = [] if self.errors else ["no check ran: nothing to compare the gradients with"]
        for (impl, check), by_row in self.errors.items():
            for row, err in by_row.items():
                if not err <= TOLERANCE[check]:
                    out.append(f"{impl} vs {check}: {row} error {err:.1e} > {TOLERANCE[check]:.0e}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()


def truncated_sympy_steps(truncate: int) -> int:
    """Where SymPy checks a truncated fast path derived for T > SYMPY_MAX_STEPS: long enough for
    the truncation to cut (T > K), short enough for SymPy."""
    return min(SYMPY_MAX_STEPS, max(3, truncate + 1))


def verify(cell: Cell, module: types.ModuleType, steps: int) -> Report:
    """Compare both generated functions with the reference, finite differences and SymPy.

    A module generated for truncated BPTT (``module.TRUNCATE``) is compared with the reference
    loop truncated the same way and with SymPy's truncated chain rule; finite differences
    measure the untruncated gradient, so they are not a yardstick for it and do not run."""
    errors: dict[tuple[str, str], dict[str, float]] = {}
    truncate = module.TRUNCATE
    numeric = random_problem(module, steps, NUMERIC_SIZES, batch=NUMERIC_SIZES[3])
    tiny = random_problem(module, steps, SYMPY_SIZES)
    trusted: dict[str, tuple[tuple, tuple[float | None, dict[str, np.ndarray]]]] = {}
    reference = REFERENCES.get(cell.name)
    if reference is not None and cell == load_builtin(cell.name):
        trusted["reference"] = (numeric, reference(*numeric, truncate=truncate))
    # finite differences measure gradients only: the loss has no row here
    initial = tuple(module.INITIAL)
    if truncate is None:
        trusted["finite differences"] = (numeric, (None, finite_differences(module.loss, *numeric, names=initial)))
    if steps <= SYMPY_MAX_STEPS:
        trusted["sympy"] = (tiny, sympy_gradients(cell, *tiny, truncate=truncate))
    elif truncate is not None:
        # no finite differences, maybe no reference: SymPy checks the fast path (any T) at a T of its
        # own, long enough for the truncation to cut (T > K)
        short = truncated_sympy_steps(truncate)
        tiny = random_problem(module, short, SYMPY_SIZES)
        trusted["sympy"] = (tiny, sympy_gradients(cell, *tiny, truncate=truncate))
    rows = ("loss",) + tuple(module.PARAMS) + initial
    implementations = IMPLEMENTATIONS if module.BY_DEFINITION else IMPLEMENTATIONS[:1]
    for impl in implementations:
        fn: GradFn = getattr(module, impl)
        for check, (problem, (loss, grads)) in trusted.items():
            if impl == "gradients_by_definition" and problem is tiny and steps > SYMPY_MAX_STEPS:
                continue  # written for T = steps only
            got_loss, got = fn(*problem)
            by_row = {} if loss is None else {"loss": max_rel_error(got_loss, loss)}
            floor = FD_SCALE_FLOOR if check == "finite differences" else SCALE_FLOOR
            by_row.update({name: max_rel_error(got[name], grads[name], floor) for name in rows[1:]})
            errors[(impl, check)] = by_row
    return Report(cell.name, steps, rows, errors, truncate, module.BY_DEFINITION)


def format_table(report: Report) -> str:
    """The report as a plain-text table, one row per loss/parameter/initial state."""
    names = {"reference": "reference", "finite differences": "finite diff", "sympy": "SymPy"}
    width = 12
    head1 = " " * 12 + "".join(impl.ljust(width * len(CHECKS)) for impl in IMPLEMENTATIONS)
    head2 = " " * 12 + "".join(names[c].ljust(width) for _ in IMPLEMENTATIONS for c in CHECKS)
    lines = [head1.rstrip(), head2.rstrip()]
    for row in report.rows:
        cells = []
        for impl in IMPLEMENTATIONS:
            for check in CHECKS:
                err = report.error(impl, check, row)
                cells.append(("-" if err is None else f"{err:.1e}").ljust(width))
        lines.append(("  " + row).ljust(12) + "".join(cells).rstrip())
    tol = "".join(f"{TOLERANCE[c]:.0e}".ljust(width) for _ in IMPLEMENTATIONS for c in CHECKS)
    lines.append("  tolerance".ljust(12) + tol.rstrip())
    if report.truncate is not None:
        lines.append(f"  (truncated to {report.truncate} steps: finite differences measure the full gradient, not run)")
        if report.steps > SYMPY_MAX_STEPS and report.errors.get((IMPLEMENTATIONS[0], "sympy")):
            short = truncated_sympy_steps(report.truncate)
            lines.append(f"  (SymPy checked loss_and_gradients at T = {short}: it takes any T)")
    if report.steps > SYMPY_MAX_STEPS and not report.errors.get((IMPLEMENTATIONS[0], "sympy")):
        lines.append(f"  (SymPy's scalar check runs for T <= {SYMPY_MAX_STEPS} only)")
    if not any(impl == IMPLEMENTATIONS[1] for impl, _ in report.errors):
        if report.by_definition:
            lines.append(f"  ({IMPLEMENTATIONS[1]} not checked: no yardstick at T = {report.steps} with truncation)")
        else:
            lines.append(f"  ({IMPLEMENTATIONS[1]} is generated for small T only)")
    return "\n".join(lines)
