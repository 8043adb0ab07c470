"""``bptt check``: a user's own hand-written gradient code against the derivation, and, where it is
wrong, what is most likely wrong with it.

The user's function is imported from its file and called, through an adapter for its signature,
on seeded random problems at several T in float64; its loss and gradients are compared with the
generated module's (which ``bptt verify`` checks against a reference loop, finite differences and
SymPy).  A gradient that does not match is compared with what the derivation gives when one
thing is done wrong, each computed from the derivation's own parts, not guessed:

- the recurrent terms left out (only the k = t terms: BPTT truncated to one step);
- the sums truncated to K steps (k > t - K);
- an activation's derivative left out of the local Jacobians;
- a gradient's outer product taken with the vector of the wrong step (h_t for h_{t-1});
- the outer product transposed or its factors swapped; the sign flipped;
- the mean over time instead of the sum; the gradient clipped.

Adapters: ``minchar`` (Karpathy's min-char-rnn: ``lossFun(inputs, targets, hprev)``, inputs and
targets lists of ints, the weights Wxh, Whh, Why, bh, by read from the module's globals, or
passed as further arguments named like them; returns loss, dWxh, dWhh, dWhy, dbh, dby, hlast;
column vectors) and ``generic`` (``fn(params, xs, labels, h0) -> (loss, grads)``, dicts by name,
one sequence: xs (T, n_x), labels (T,), h0 (n_h,); a cell with several states takes one initial
value each, in the order the cell declares them: ``fn(params, xs, labels, h0, c0)``).  User names
are matched to the cell's by their letters (``Wxh`` is ``W_xh``), or given with ``--map Wxh=W_xh``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import io
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from . import naming
from .adjoint import build_program
from .cell import Cell
from .exprs import Elementwise
from .ops import ACTIVATIONS
from .outputs import module_source
from .pipeline import Derivation, derive
from .rules import RULES
from .unroll import relabel
from .verify import load_module, max_rel_error

CHECK_RTOL = 1e-6  # the user's float64 code against the derived gradients: rounding, and more
CHECK_STEPS = (1, 2, 3, 5)  # the diagnosis runs at the last: long enough to tell K = 1..4 apart
CHECK_MAX_STEPS = 20
CHECK_SIZES = {"x": 4, "h": 5, "y": 4}  # min-char-rnn reads one vocabulary for inputs and outputs
SEED = 20261129
MINCHAR_WEIGHTS = ("Wxh", "Whh", "Why", "bh", "by")


class CheckError(Exception):
    """Bad usage: the one line a user reads (exit status 2)."""


# ---- the user's function ------------------------------------------------------------------------


def parse_target(text: str) -> tuple[Path, str]:
    path, sep, name = text.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise CheckError(f"{text}: expected FILE.py:FUNCTION, e.g. my_rnn.py:lossFun")
    return Path(path), name


def load_function(path: Path, name: str) -> tuple[types.ModuleType, Callable[..., Any]]:
    """Import the user's file (running it, as Python does) and return (module, function)."""
    if not path.is_file():
        raise CheckError(f"{path}: no such file")
    module_name = f"bptt_check_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CheckError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # as Python imports a script's module: registered by name (dataclasses and pickle look it up
    # there), its folder first on the path (for the modules beside it)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        with _quiet():
            spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CheckError(f"{path}:{e.lineno}:{e.offset}: {e.msg}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's module-level code: anything may happen, SystemExit too
        raise CheckError(f"{path}: importing it raised {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module_name and not n.startswith("_")
        )
        raise CheckError(f"{path}: no function {name!r}" + (f" (found: {', '.join(found)})" if found else ""))
    if not callable(fn):
        raise CheckError(f"{path}: {name!r} is not a function")
    return module, fn


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The user's prints (a training loop's progress, say) kept off our report."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


def _letters(name: str) -> str:
    return name.replace("_", "").lower()


def match_names(user: list[str], cell: Cell, explicit: dict[str, str]) -> dict[str, str]:
    """{user name: cell parameter} by --map first, then by letters (Wxh is W_xh)."""
    params = list(cell.param_names)
    for u, c in explicit.items():
        if c not in params:
            raise CheckError(f"--map {u}={c}: the cell has no parameter {c!r} (it has {', '.join(params)})")
    out = {u: c for u, c in explicit.items() if u in user}
    by_letters = {_letters(p): p for p in params}
    for u in user:
        if u not in out and _letters(u) in by_letters and by_letters[_letters(u)] not in out.values():
            out[u] = by_letters[_letters(u)]
    return out


# ---- adapters -------------------------------------------------------------------------------------

Grads = dict[str, np.ndarray]


@dataclass
class Problem:
    """One sequence: the cell's parameters (cell shapes), inputs as ints (one-hot), labels, and an
    initial value for each state (h0, c0, ... in the cell's order)."""

    params: dict[str, np.ndarray]
    inputs: list[int]
    labels: list[int]
    initial: list[np.ndarray]  # (n,) each

    def onehot(self, n: int) -> np.ndarray:
        return np.eye(n)[self.inputs]


class Adapter:
    name = ""

    def __init__(self, module: types.ModuleType, fn: Callable[..., Any], cell: Cell, explicit: dict[str, str]):
        self.module, self.fn, self.cell = module, fn, cell
        self.label = getattr(fn, "__name__", "the function")
        self.setup(explicit)

    def setup(self, explicit: dict[str, str]) -> None: ...

    def call(self, problem: Problem) -> tuple[float, Grads]:
        raise NotImplementedError

    hint = ""  # said after an exception the adapter's conventions may explain

    def _invoke(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with _quiet():
                return self.fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit and GeneratorExit too: the report must still come
            where = _user_frame(e)
            hint = self.hint if isinstance(e, KeyError) else ""
            raise CheckError(f"{self.label}{where} raised {type(e).__name__}: {e}{hint}") from None


def _user_frame(e: BaseException) -> str:
    """`` (file:line)`` of the innermost frame of the exception that is not ours."""
    tb, found = e.__traceback__, ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(str(Path(__file__).parent)):
            found = f" ({filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return found


class MinChar(Adapter):
    """lossFun(inputs, targets, hprev) -> loss, dWxh, dWhh, dWhy, dbh, dby, hlast."""

    name = "minchar"

    def setup(self, explicit: dict[str, str]) -> None:
        self.weights = list(MINCHAR_WEIGHTS)
        self.names = match_names(self.weights, self.cell, explicit)
        missing = [p for p in self.cell.param_names if p not in self.names.values()]
        if missing:
            raise CheckError(
                f"{self.label}: no min-char-rnn weight for {', '.join(missing)} (its weights are "
                f"{', '.join(self.weights)}); map one with --map NAME=PARAM, or choose another --cell"
            )
        sig = inspect.signature(self.fn)
        self.extra = [p for p in list(sig.parameters)[3:] if p in self.weights]
        if len(sig.parameters) < 3:
            raise CheckError(f"{self.label}: a min-char-rnn lossFun takes (inputs, targets, hprev, ...)")

    def call(self, problem: Problem) -> tuple[float, Grads]:
        sizes = self.cell.sizes(problem.params)
        values = {}
        for w in self.weights:  # each weight as min-char-rnn keeps it: biases as columns
            c = self.names.get(w)
            if c is None:  # a weight the cell does not have (bh for the seed model): zero, unchecked
                x, h, y = (sizes[v.dim] for v in (self.cell.inputs[0], self.cell.states[0], self.cell.targets[0]))
                rows = h if w in ("Wxh", "Whh", "bh") else y
                values[w] = np.zeros((rows, {"Wxh": x, "Whh": h, "Why": h}.get(w, 1)))
            else:
                p = problem.params[c]
                values[w] = p.reshape(-1, 1).copy() if p.ndim == 1 else p.copy()
            setattr(self.module, w, values[w])
        for name, v in (("vocab_size", self.cell.inputs[0]), ("hidden_size", self.cell.states[0])):
            if hasattr(self.module, name):  # min-char-rnn reads these too
                setattr(self.module, name, sizes[v.dim])
        kwargs = {w: values[w] for w in self.extra}
        hprev = problem.initial[0].reshape(-1, 1).copy()
        out = self._invoke(list(problem.inputs), list(problem.labels), hprev, **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) < 1 + len(self.weights):
            n = len(out) if isinstance(out, (tuple, list)) else 1
            raise CheckError(
                f"{self.label} returned {n} value{'s' if n != 1 else ''}; a min-char-rnn lossFun returns "
                f"loss, {', '.join('d' + w for w in self.weights)}, hlast"
            )
        grads = {}
        for w, g in zip(self.weights, out[1 : 1 + len(self.weights)]):
            if w in self.names:
                c = self.names[w]
                g = _gradient(g, self.label, "d" + w)
                want = problem.params[c].shape
                grads[c] = g.reshape(want) if g.size == int(np.prod(want)) and g.ndim != len(want) else g
        return _loss(out[0], self.label), grads


class Generic(Adapter):
    """fn(params, xs, labels, h0) -> (loss, grads), dicts by name, one sequence."""

    name = "generic"

    def setup(self, explicit: dict[str, str]) -> None:
        self.to_cell = {u: c for u, c in explicit.items()}
        self.to_user = {c: u for u, c in self.to_cell.items()}
        names = ", ".join(self.to_user.get(c, c) for c in self.cell.param_names)
        self.hint = f" (params holds {names}; give your names with --map NAME=PARAM)"

    def call(self, problem: Problem) -> tuple[float, Grads]:
        params = {self.to_user.get(c, c): v.copy() for c, v in problem.params.items()}
        xs = problem.onehot(_input_size(self.cell, problem))
        out = self._invoke(params, xs, np.array(problem.labels), *(v.copy() for v in problem.initial))
        if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], dict):
            raise CheckError(
                f"{self.label} returned {_shape_of(out)}; expected (loss, grads) with grads a dict by name"
            )
        loss, grads = out
        names = match_names(list(grads), self.cell, self.to_cell)
        return _loss(loss, self.label), {names[u]: _gradient(g, self.label, u) for u, g in grads.items() if u in names}


def _shape_of(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{len(value)} values"
    return f"a {type(value).__name__}"


def _loss(value: Any, label: str) -> float:
    if not isinstance(value, (str, bytes)):
        with contextlib.suppress(TypeError, ValueError):
            array = np.asarray(value)
            if array.dtype.kind in "biuf" and array.size == 1:
                return float(array.reshape(()))
    raise CheckError(f"{label}: its loss is not a real number ({_shape_of(value)})")


def _gradient(value: Any, label: str, name: str) -> np.ndarray:
    """A returned gradient as a float64 array; bad usage (one line) if it is not an array of reals."""
    with contextlib.suppress(TypeError, ValueError):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64)
    raise CheckError(f"{label}: its gradient {name} is not an array of real numbers ({_shape_of(value)})")


ADAPTERS: dict[str, type[Adapter]] = {"minchar": MinChar, "generic": Generic}


def pick_adapter(fn: Callable[..., Any], wanted: str) -> type[Adapter]:
    if wanted != "auto":
        return ADAPTERS[wanted]
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:1] == ["params"] or len(params) == 4 and params[0] not in ("inputs", "x", "xs_ints"):
        return Generic
    if len(params) >= 3:
        return MinChar
    raise CheckError(
        f"{getattr(fn, '__name__', 'the function')}{tuple(params)}: not a signature an adapter knows; "
        "choose one with --adapter minchar|generic"
    )


# ---- the derivation's gradients, right and wrong ----------------------------------------------------


def problems(cell: Cell, steps: tuple[int, ...], seed: int = SEED) -> list[Problem]:
    """One seeded sequence per T: min-char-rnn's sizes for x, h, y, and 6, 7, ... for other dims."""
    rng = np.random.default_rng(seed)
    sizes = {d: CHECK_SIZES.get(d, 6 + i) for i, d in enumerate(cell.dims)}
    out = []
    for t in steps:
        params = {}
        for p in cell.params:
            shape = tuple(sizes[d] for d in p.shape)
            params[p.name] = 0.8 * rng.standard_normal(shape) / np.sqrt(shape[-1])
        inputs = [int(i) for i in rng.integers(0, sizes[cell.inputs[0].dim], t)]
        labels = [int(i) for i in rng.integers(0, sizes[cell.targets[0].dim], t)]
        initial = [0.5 * rng.standard_normal(sizes[state.dim]) for state in cell.states]
        out.append(Problem(params, inputs, labels, initial))
    return out


def _module(derivation: Derivation, tag: str) -> types.ModuleType:
    return load_module(module_source(derivation), f"check_{tag}")


def _grads(module: types.ModuleType, problem: Problem, cell: Cell) -> tuple[float, Grads]:
    xs = problem.onehot(_input_size(cell, problem))
    loss, grads = module.loss_and_gradients(problem.params, xs, np.array(problem.labels), *problem.initial)
    return loss, {k: v for k, v in grads.items() if k in cell.param_names}


def _shifted_outer_products(derivation: Derivation) -> Derivation:
    """Each gradient's outer product taken with the vector of the next step: h_t for h_{t-1}."""
    program = derivation.program
    accumulates = []
    for acc in program.accumulates:
        swap = {
            tr: sp.Transpose(relabel(tr.arg, "t+1"))  # v_{t-1}^T -> v_t^T
            for tr in acc.expr.atoms(sp.Transpose)
            if isinstance(tr.arg, sp.MatrixSymbol) and naming.split(tr.arg.name)[1] == "t-1"
        }
        accumulates.append(dataclasses.replace(acc, expr=acc.expr.xreplace(swap)) if swap else acc)
    return dataclasses.replace(derivation, program=dataclasses.replace(program, accumulates=tuple(accumulates)))


def _input_size(cell: Cell, problem: Problem) -> int:
    return cell.sizes(problem.params)[cell.inputs[0].dim]


@dataclass
class Suspect:
    """One way of getting the gradients wrong: its gradients, and what to say."""

    key: str
    says: str  # what the user's code does
    term: str  # the part of the derivation it misses, and where the document writes it
    grads: Grads


def _activations(cell: Cell) -> list[str]:
    """The elementwise functions with a derivative that the cell's equations apply, by name."""
    found = {e.op.name for eq in cell.equations for e in sp.preorder_traversal(eq.rhs) if isinstance(e, Elementwise)}
    return sorted(name for name in found if ACTIVATIONS[name].op.slope is not None)


def suspects(derivation: Derivation, problem: Problem, steps: int, right: Grads) -> list[Suspect]:
    """The derivation's gradients with one thing done wrong, for ``problem`` (of ``steps`` steps),
    whose right gradients are ``right``."""
    cell = derivation.cell
    doc = f"{naming.file_stem(cell.name, steps, None)}.tex"
    out = []
    for k in range(1, steps):
        grads = _grads(_module(dataclasses.replace(derivation, truncate=k), f"k{k}"), problem, cell)[1]
        if k == 1:
            out.append(
                Suspect(
                    "recurrence",
                    "keeps only the k = t terms: the gradient does not flow back through the state",
                    f'the terms with k < t of each sum over k in "The chain-rule expansions" of {doc}, '
                    'and the carried share in "The efficient recurrence"',
                    grads,
                )
            )
        else:
            out.append(
                Suspect(
                    f"truncate{k}",
                    f"truncates BPTT to {k} steps (keeps the terms with k > t - {k})",
                    f'the terms with k <= t - {k} in "The chain-rule expansions" of {doc}',
                    grads,
                )
            )
    program = build_program(cell, RULES.without_slopes())
    wrong = _module(dataclasses.replace(derivation, program=program), "noact")
    slopes = ", ".join(f"{name}'" for name in _activations(cell))
    out.append(
        Suspect(
            "activation",
            f"leaves an activation's derivative out ({slopes}: uses dJ/dh where dJ/da = diag(f'(a)) dJ/dh belongs)",
            f"the activations' factors (diag(f'(a_t)): {slopes}) in \"The local derivatives\" of {doc}",
            _grads(wrong, problem, cell)[1],
        )
    )
    shifted = _module(_shifted_outer_products(derivation), "shift")
    out.append(
        Suspect(
            "step",
            "takes the outer product with the state of the wrong step (h_t where h_{t-1} belongs)",
            f'the last factor of each term, dz_k/dW = (.) h_{{k-1}}^T, in "The gradients" of {doc}',
            _grads(shifted, problem, cell)[1],
        )
    )
    out.append(
        Suspect(
            "transposed",
            "transposes the gradient (swaps the factors of its outer product: x delta^T for delta x^T)",
            f'the order of each outer product delta_k v^T in "The gradients" of {doc}',
            {k: g.T for k, g in right.items()},
        )
    )
    out.append(
        Suspect(
            "sign",
            "has the sign flipped",
            f'the sign of dJ/dp in "The local derivatives" of {doc}',
            {k: -g for k, g in right.items()},
        )
    )
    out.append(
        Suspect(
            "mean",
            f"takes the mean over the {steps} steps instead of the sum (J = sum_t J_t)",
            f'the sum over t in the loss, "The model" of {doc}',
            {k: g / steps for k, g in right.items()},
        )
    )
    return out


# ---- the report ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str  # "loss" or a parameter
    error: float  # max over the checked T of the relative error
    ok: bool
    diagnosis: str = ""


@dataclass
class CheckReport:
    target: str
    cell: str
    adapter: str
    steps: tuple[int, ...]
    rows: list[Row]
    unchecked: list[str]  # the user's gradients of weights the cell does not have

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)


def _error(got: np.ndarray | float, want: np.ndarray | float) -> float:
    """max_rel_error, with a NaN or an infinity in what the user returned counted as wrong."""
    error = max_rel_error(got, want)
    return error if np.isfinite(error) else float("inf")


def _clipped(user: np.ndarray, right: np.ndarray) -> float | None:
    """c where user = clip(right, -c, c) and some entries were clipped; None otherwise."""
    if user.shape != right.shape:
        return None
    c = float(np.max(np.abs(user)))
    if not 0 < c < float(np.max(np.abs(right))):
        return None
    return c if max_rel_error(user, np.clip(right, -c, c)) <= CHECK_RTOL else None


def _scaled(user: np.ndarray, right: np.ndarray) -> float | None:
    """c where user = c * right (c not 1); None otherwise."""
    if user.shape != right.shape or not np.any(right):
        return None
    c = float(np.vdot(user, right) / np.vdot(right, right))
    if abs(c - 1) < 1e-3 or abs(c) < 1e-12:
        return None
    return c if max_rel_error(user, c * right) <= CHECK_RTOL else None


def diagnose(
    name: str, user: np.ndarray, right: np.ndarray, found: list[Suspect], first_wrong: int, shortest: int
) -> str:
    if not np.all(np.isfinite(user)):
        return "has NaN or infinite entries"
    if user.shape != right.shape:
        if user.shape == right.shape[::-1] and max_rel_error(user, right.T) <= CHECK_RTOL:
            return f"has shape {user.shape}, the transpose of {right.shape}: the outer product's factors are swapped"
        return f"has shape {user.shape}; {name} is {right.shape}"
    for s in found:
        if name in s.grads and max_rel_error(user, s.grads[name]) <= CHECK_RTOL:
            return f"{s.says}. Missing: {s.term}"
    if (c := _clipped(user, right)) is not None:
        return f"is clipped to [-{c:.3g}, {c:.3g}]: compare gradients before clipping them"
    if (c := _scaled(user, right)) is not None:
        return f"is {c:.6g} times the right gradient: a factor in the loss (a mean, a 1/2) differs"
    if first_wrong > shortest:
        return (
            f"matches none of the usual mistakes; it is right for T < {first_wrong} and wrong from T = "
            f"{first_wrong}: look at the terms with k < t (what is carried back through the state)"
        )
    if shortest > 1:
        return (
            f"matches none of the usual mistakes; it is wrong already at the shortest T checked ({shortest}): "
            "check with --steps 1,2,3,5 to see where it starts"
        )
    return (
        "matches none of the usual mistakes; it is wrong already at T = 1: look at the local derivatives "
        'of one step ("The local derivatives")'
    )


def check(
    target: str,
    cell: Cell,
    adapter_name: str = "auto",
    explicit: dict[str, str] | None = None,
    steps: tuple[int, ...] = CHECK_STEPS,
) -> CheckReport:
    shape = (len(cell.inputs), len(cell.targets), cell.loss_mode)
    if shape != (1, 1, "every") or cell.targets[0].kind != "class":
        raise CheckError(
            f"{cell.name}: bptt check takes cells with one input and one class target at every step "
            "(the min-char-rnn shape) for now"
        )
    path, name = parse_target(target)
    module, fn = load_function(path, name)
    adapter = pick_adapter(fn, adapter_name)(module, fn, cell, explicit or {})
    derivation = derive(cell, max(steps))
    right_module = _module(derivation, "right")
    errors: dict[str, float] = {"loss": 0.0}
    last: tuple[Problem, Grads, Grads] | None = None
    last_loss: tuple[Problem, float, float] | None = None
    first_wrong: dict[str, int] = {}  # the shortest T at which a gradient is wrong
    for problem in problems(cell, steps):
        loss, user = adapter.call(problem)
        want_loss, want = _grads(right_module, problem, cell)
        errors["loss"] = max(errors["loss"], _error(loss, want_loss))
        last_loss = (problem, loss, want_loss)
        for p in cell.param_names:
            if p not in user:
                raise CheckError(f"{adapter.label} returned no gradient for {p}; map its name with --map NAME={p}")
            error = _error(user[p], want[p])
            errors[p] = max(errors.get(p, 0.0), error)
            if error > CHECK_RTOL:
                first_wrong.setdefault(p, len(problem.inputs))
        last = (problem, user, want)
    assert last is not None and last_loss is not None
    rows = [Row(k, e, e <= CHECK_RTOL) for k, e in errors.items()]
    if not all(r.ok for r in rows if r.name != "loss"):
        problem, user, want = last
        found = suspects(derivation, problem, max(steps), want)
        for r in rows:
            if not r.ok and r.name != "loss":
                r.diagnosis = diagnose(r.name, user[r.name], want[r.name], found, first_wrong[r.name], min(steps))
    loss_row = rows[0]
    if not loss_row.ok:
        problem, user_loss, want_loss = last_loss
        T = len(problem.inputs)
        if abs(user_loss - want_loss / T) <= CHECK_RTOL * abs(want_loss):
            loss_row.diagnosis = f"is the mean of J_t over the {T} steps, not their sum J = sum_t J_t"
        else:
            loss_row.diagnosis = "differs from the derivation's J = sum_t J_t: the forward pass is not the cell's"
    unchecked = [w for w in getattr(adapter, "weights", []) if w not in getattr(adapter, "names", {})]
    return CheckReport(target, cell.name, adapter.name, steps, rows, unchecked)


def format_report(report: CheckReport) -> str:
    lines = [
        f"bptt check {report.target} against the {report.cell} cell ({report.adapter} adapter), "
        f"T = {', '.join(map(str, report.steps))}, float64",
        f"  {'':<8} {'max rel error':>14}  verdict (tolerance {CHECK_RTOL:.0e})",
    ]
    for r in report.rows:
        lines.append(f"  {r.name:<8} {r.error:>14.1e}  {'ok' if r.ok else 'WRONG'}")
    by_diagnosis: dict[str, list[str]] = {}
    for r in report.rows:
        if r.diagnosis:
            by_diagnosis.setdefault(r.diagnosis, []).append(r.name)
    if by_diagnosis:
        lines.append("")
        for diagnosis, names in by_diagnosis.items():
            lines.append(f"{', '.join(names)}: {diagnosis}")
        if any(r.diagnosis and r.name != "loss" for r in report.rows):
            lines.append(
                f"(the derivation: bptt derive --cell {report.cell} --steps {max(report.steps)} writes "
                f"{naming.file_stem(report.cell, max(report.steps), None)}.tex)"
            )
    if report.unchecked:
        lines.append(
            f"\nnot in the {report.cell} cell (set to zero, gradients not checked): {', '.join(report.unchecked)}"
        )
    lines.append("\nall gradients match" if report.passed else "\nsome gradients do not match")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: bptt check FILE.py:FUNCTION --cell CELL")
