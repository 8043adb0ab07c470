"""Stage 8: check the generated gradients against three things we did not generate.

1. ``reference``: a hand-written min-char-rnn-style loop (``derive.reference``);
2. central finite differences of the generated ``loss`` (its value checked
   against the reference loop's);
3. exact ``sympy.diff`` of the fully scalar unrolled loss, built here from the
   cell's equations with explicit matrices of scalar symbols: SymPy's own
   derivatives of tanh, exp and log, none of our rule table.

The error measure is ``max|a - b| / max(max|b|, SCALE_FLOOR)``: the largest
deviation relative to the largest entry of the trusted value.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from . import naming
from .cell import Cell
from .exprs import CrossEntropy, Softmax, Tanh
from .reference import reference_loss_and_gradients
from .unroll import at_step

SCALE_FLOOR = 1e-8
RTOL_EXACT = 1e-10  # against the reference loop and SymPy: float64 rounding only
RTOL_FD = 1e-6  # against central differences with FD_EPS: truncation and cancellation
FD_EPS = 1e-6
SEED = 20261129

# sizes: (n_x, n_h, n_y, B) for the numeric checks, and the tiny ones for SymPy
NUMERIC_SIZES = (3, 4, 5, 2)
SYMPY_SIZES = (2, 2, 3)
SYMPY_MAX_STEPS = 6  # the scalar unrolled loss, and the time to differentiate it, grow fast with T

GradFn = Callable[..., tuple[float, dict[str, np.ndarray]]]


def load_module(source: str, name: str) -> types.ModuleType:
    """Import generated source (our own output, never user text) as a module."""
    module = types.ModuleType(name)
    module.__file__ = f"<generated {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def max_rel_error(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), SCALE_FLOOR))


def random_problem(
    module: types.ModuleType, steps: int, sizes: tuple[int, ...], seed: int = SEED, batch: int | None = None
):
    """Seeded params, inputs, labels and initial state for the seed cell's dimensions."""
    n_x, n_h, n_y = sizes[:3]
    rng = np.random.default_rng(seed)
    params = {k: 0.8 * v for k, v in module.init_params(n_x, n_h, n_y, seed=seed).items()}
    lead = (steps,) if batch is None else (steps, batch)
    xs = rng.standard_normal(lead + (n_x,))
    labels = rng.integers(0, n_y, lead)
    h0 = 0.5 * rng.standard_normal(lead[1:] + (n_h,))
    return params, xs, labels, h0


def finite_differences(
    loss: Callable[..., float], params, xs, labels, h0, eps: float = FD_EPS
) -> dict[str, np.ndarray]:
    """Central differences of ``loss`` with respect to every parameter and h0."""
    grads = {}
    targets = dict(params, h0=h0)
    for name, value in targets.items():
        g = np.zeros_like(value, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            shifted = {}
            for sign in (1, -1):
                v = np.array(value, dtype=np.float64)
                v[idx] += sign * eps
                args = dict(targets, **{name: v})
                h = args.pop("h0")
                shifted[sign] = loss(args, xs, labels, h)
            g[idx] = (shifted[1] - shifted[-1]) / (2 * eps)
        grads[name] = g
    return grads


# ---- exact SymPy differentiation of the scalar unrolled loss ---------------------------


def _explicit(expr: sp.Basic, env: dict[str, sp.Matrix]) -> sp.Matrix:
    """Evaluate a cell expression on explicit matrices of scalars."""
    if isinstance(expr, sp.MatrixSymbol):
        return env[expr.name]
    if isinstance(expr, sp.MatAdd):
        out = _explicit(expr.args[0], env)
        for arg in expr.args[1:]:
            out = out + _explicit(arg, env)
        return out
    if isinstance(expr, sp.MatMul):
        out = _explicit(expr.args[0], env) if not expr.args[0].is_Number else expr.args[0]
        for arg in expr.args[1:]:
            out = out * _explicit(arg, env)
        return out
    if isinstance(expr, Tanh):
        return _explicit(expr.arg, env).applyfunc(sp.tanh)
    if isinstance(expr, Softmax):
        e = _explicit(expr.arg, env).applyfunc(sp.exp)
        return e / sum(e)
    if isinstance(expr, CrossEntropy):
        p, onehot = _explicit(expr.p, env), _explicit(expr.target, env)
        return sp.Matrix([[-sum(li * sp.log(pi) for li, pi in zip(onehot, p))]])
    raise NotImplementedError(f"no explicit evaluation for {type(expr).__name__}")


def sympy_gradients(cell: Cell, params, xs, labels, h0) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of one sequence by ``sympy.diff`` of the scalar unrolled loss."""
    env: dict[str, sp.Matrix] = {}
    unknowns: dict[str, sp.Matrix] = {}
    for p in cell.params:
        shape = np.shape(params[p.name])
        rows, cols = shape if len(shape) == 2 else (shape[0], 1)
        unknowns[p.name] = sp.Matrix(rows, cols, lambda i, j, n=p.name: sp.Symbol(f"{n}_{i}_{j}"))
    state = cell.states[0]
    unknowns["h0"] = sp.Matrix(len(h0), 1, lambda i, j: sp.Symbol(f"h0_{i}"))
    env.update({k: v for k, v in unknowns.items() if k != "h0"})
    env[naming.step_name(state.name, 0)] = unknowns["h0"]
    n_y = cell.sizes(params)[cell.targets[0].dim]
    total = sp.S.Zero
    for t in range(1, len(xs) + 1):
        env[naming.step_name(cell.inputs[0].name, t)] = sp.Matrix([sp.Float(v, 30) for v in xs[t - 1]])
        onehot = [sp.S.One if i == labels[t - 1] else sp.S.Zero for i in range(n_y)]
        env[naming.step_name(cell.targets[0].name, t)] = sp.Matrix(onehot)
        for eq in cell.equations:
            env[naming.step_name(eq.name, t)] = _explicit(at_step(eq.rhs, t), env)
        total += env[naming.step_name(cell.loss, t)][0, 0]
    values = {s: v for name, m in unknowns.items() for s, v in zip(m, np.ravel(params[name] if name != "h0" else h0))}
    symbols = list(values)
    derivs = [sp.diff(total, s) for s in symbols]
    f = sp.lambdify(symbols, [total] + derivs, modules="numpy", cse=True)
    out = f(*[float(values[s]) for s in symbols])
    loss, flat = float(out[0]), np.array(out[1:], dtype=np.float64)
    grads, i = {}, 0
    for name in unknowns:
        shape = np.shape(params[name]) if name != "h0" else np.shape(h0)
        size = int(np.prod(shape))
        grads[name] = flat[i : i + size].reshape(shape)
        i += size
    return loss, grads


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

    def error(self, impl: str, check: str, row: str) -> float | None:
        """The measured error, or None where the check was not run (SymPy beyond SYMPY_MAX_STEPS)."""
        return self.errors.get((impl, check), {}).get(row)

    def failures(self) -> list[str]:
        out = []
        for (impl, check), by_row in self.errors.items():
            for row, err in by_row.items():
                if not err <= TOLERANCE[check]:
                    out.append(f"{impl} vs {check}: {row} error {err:.1e} > {TOLERANCE[check]:.0e}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()


def verify(cell: Cell, module: types.ModuleType, steps: int) -> Report:
    """Compare both generated functions with the reference, finite differences and SymPy."""
    errors: dict[tuple[str, str], dict[str, float]] = {}
    numeric = random_problem(module, steps, NUMERIC_SIZES, batch=NUMERIC_SIZES[3])
    tiny = random_problem(module, steps, SYMPY_SIZES)
    trusted: dict[str, tuple[tuple, tuple[float | None, dict[str, np.ndarray]]]] = {
        "reference": (numeric, reference_loss_and_gradients(*numeric)),
        # finite differences measure gradients only: the loss has no row here
        "finite differences": (numeric, (None, finite_differences(module.loss, *numeric))),
    }
    if steps <= SYMPY_MAX_STEPS:
        trusted["sympy"] = (tiny, sympy_gradients(cell, *tiny))
    rows = ("loss",) + tuple(module.PARAMS) + ("h0",)
    implementations = IMPLEMENTATIONS if module.BY_DEFINITION else IMPLEMENTATIONS[:1]
    for impl in implementations:
        fn: GradFn = getattr(module, impl)
        for check, (problem, (loss, grads)) in trusted.items():
            got_loss, got = fn(*problem)
            by_row = {} if loss is None else {"loss": max_rel_error(got_loss, loss)}
            by_row.update({name: max_rel_error(got[name], grads[name]) for name in rows[1:]})
            errors[(impl, check)] = by_row
    return Report(cell.name, steps, rows, errors)


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
    if report.steps > SYMPY_MAX_STEPS:
        lines.append(f"  (SymPy's scalar check runs for T <= {SYMPY_MAX_STEPS} only)")
    if not any(impl == IMPLEMENTATIONS[1] for impl, _ in report.errors):
        lines.append(f"  ({IMPLEMENTATIONS[1]} is generated for small T only)")
    return "\n".join(lines)
