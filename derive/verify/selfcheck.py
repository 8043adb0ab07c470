"""The check every generated NumPy module passes before it is written.

A wrong gradient that nobody notices is the worst thing this tool can produce, so no
command writes a module that has not been run.  On a small seeded problem (every
dimension a size of its own, from SMALLEST_SIZE up, B = SELF_CHECK_BATCH sequences) the
fast path ``loss_and_gradients`` is

- run twice with its work arrays poisoned, once with NaN and once with a finite
  value (the template allocates every array it fills before reading through one
  function, ``_empty``, which the check replaces): a read before a write shows as a
  NaN, or as two calls that are not bitwise identical; it must return a gradient of
  the right shape for every parameter and initial state, and nothing else;
- run again on the work arrays it kept (``release_workspaces`` drops them before the
  poisoned calls), after a call on another problem: bitwise the same result, and the
  first call's arrays unchanged (a gradient is never one of the arrays it keeps);
- compared with its sequences run one at a time, unbatched (the B = 1 forms, 1e-10), and
  with itself in float32 (RTOL_FLOAT32);
- run with ``lengths`` (from T down to 1), every step past a sequence's length NaN (a class
  label out of range), its work arrays poisoned: the same as its sequences run one at a time
  at their own lengths (1e-10, the initial states' gradients sequence by sequence);
- compared with central differences of the module's ``loss``, where the gradient at
  that T is the full one (not truncated, or T <= K: every run then reaches step 1);
- compared with ``gradients_by_definition``, where that was generated for this T.

The steps checked: SELF_CHECK_STEPS, the derived T where the by-definition path is
short enough to run, and with truncation K also min(K, SELF_CHECK_STEPS) (finite
differences see every rule there) and K + 1 (poisoned, where the runs cut).  The cut
itself is checked against SymPy's truncated chain rule, which differentiates the cell's
own scalar forward: the module reads ``TRUNCATE`` when it runs, so the check sets it to
CUT and compares at T = CUT + 1, whatever K the module was made for.

Anything that goes wrong, a disagreement, a crash or a module that does not load, is a
bug of ours: ``SelfCheckError``, whose one-line message says what.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from derive.ir.cell import Cell
from derive.verify.report import (
    FD_SCALE_FLOOR,
    RTOL_EXACT,
    RTOL_FD,
    RTOL_FLOAT32,
    SCALE_FLOOR,
    SYMPY_SIZES,
    distinct_sizes,
    finite_differences,
    in_dtype,
    load_module,
    max_rel_error,
    random_problem,
    sympy_gradients,
)

SELF_CHECK_STEPS = 3
SELF_CHECK_BATCH = 2
SMALLEST_SIZE = 4  # above every step count checked at T = 3, so that no axis hides behind another's size
CUT = 2  # the truncation the cut is checked at, against SymPy
SELF_CHECK_SEED = 20261130
DEFINITION_MAX_STEPS = 6  # the by-definition path's cost grows as T^3 (more for gated cells)
POISONS = (np.nan, 0.5)  # the second is finite: a read masked from NaN (np.fmax, where=) still differs
READ_BEFORE_WRITE = "it reads a work array before writing it"

Result = tuple[float, dict[str, np.ndarray]]


class SelfCheckError(Exception):
    """A generated module that failed its self-check; the message says what disagreed."""


class CellNotFinite(SelfCheckError):
    """A cell that is not finite on the check's random problem whatever the module's work arrays hold:
    the cell's doing (a function outside its domain), not a bug of the generated code."""


def check_steps(module: types.ModuleType) -> list[int]:
    """The sequence lengths the module is run at, in increasing order."""
    steps = {SELF_CHECK_STEPS}
    if module.BY_DEFINITION and module.STEPS <= DEFINITION_MAX_STEPS:
        steps.add(module.STEPS)
    if module.TRUNCATE is not None:
        steps |= {min(module.TRUNCATE, SELF_CHECK_STEPS), module.TRUNCATE + 1}
    return sorted(steps)


def self_check(source: str, cell: Cell, name: str = "checked") -> None:
    """Raise ``SelfCheckError`` where the module ``source`` (of ``cell``) is wrong; see the module docstring."""
    try:
        module = load_module(source, name)
        with np.errstate(all="ignore"):
            for steps in check_steps(module):
                _check_at(module, steps)
            if module.TRUNCATE is not None:
                _check_cut(module, cell)
    except SelfCheckError:
        raise
    except Exception as e:  # the module does not load, or breaks the check: our bug too
        raise SelfCheckError(_one_line(f"the module broke its check: {type(e).__name__}: {e}")) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_at(module: types.ModuleType, steps: int) -> None:
    problem = random_problem(module, steps, distinct_sizes(module, SMALLEST_SIZE), SELF_CHECK_SEED, SELF_CHECK_BATCH)
    result = _deterministic(module, problem, steps)
    for name, (expected, tolerance, floor) in _yardsticks(module, problem, steps):
        _compare(result, expected, tolerance, floor, f"{name} at T = {steps}")
    _compare(
        result, _one_at_a_time(module, problem), RTOL_EXACT, SCALE_FLOOR, f"its sequences one at a time at T = {steps}"
    )
    _check_lengths(module, problem, steps)
    single = _call(module, "loss_and_gradients", in_dtype(problem, np.float32), None)
    _compare(single, result, RTOL_FLOAT32, SCALE_FLOOR, f"its float64 self in float32 at T = {steps}")


def one_sequence(module: types.ModuleType, problem: tuple, b: int, length: int | None = None) -> tuple:
    """Sequence b of a batched problem, unbatched (its first ``length`` steps): xs (T, n), targets (T,) /
    (T, n) or, many-to-one, () / (n,), initial states (n,)."""

    def pick(value: Any, lead: int) -> Any:
        if isinstance(value, dict):
            return {k: pick(v, lead) for k, v in value.items()}
        return value[:length, b] if lead else value[b]

    params, xs, targets, *initial = problem
    return (params, pick(xs, 1), pick(targets, 0 if module.LOSS_AT == "last" else 1), *(s[b] for s in initial))


def _one_at_a_time(module: types.ModuleType, problem: tuple, lengths: np.ndarray | None = None) -> Result:
    """The batch's loss and gradients from its sequences run one by one, unbatched (the module's B = 1
    forms: no batch axis, parameters as they are rather than in Fortran order), each at its own length."""
    cut = [None] * SELF_CHECK_BATCH if lengths is None else [int(n) for n in lengths]
    runs = [
        _call(module, "loss_and_gradients", one_sequence(module, problem, b, cut[b]), None)
        for b in range(SELF_CHECK_BATCH)
    ]
    return batch_of(module, runs)


def batch_of(module: types.ModuleType, runs: list[Result]) -> Result:
    """A batch's loss and gradients from its sequences' own: the losses and the parameters' gradients
    summed, the initial states' gradients stacked, sequence by sequence."""
    grads = {k: np.sum([r[1][k] for r in runs], axis=0) for k in module.PARAMS}
    grads |= {k: np.stack([r[1][k] for r in runs]) for k in module.INITIAL}
    return float(sum(r[0] for r in runs)), grads


def padded(value: Any, lengths: np.ndarray) -> Any:
    """A (T, B, ...) array (or a dict of them) with every step past sequence b's length, lengths[b], made
    what ``lengths`` must never read: NaN, or for integers (class labels) -1."""
    if isinstance(value, dict):
        return {k: padded(v, lengths) for k, v in value.items()}
    out = value.copy()
    for b, length in enumerate(lengths):
        out[length:, b] = np.nan if out.dtype.kind == "f" else -1
    return out


def ragged(module: types.ModuleType, problem: tuple, steps: int) -> tuple[tuple, np.ndarray]:
    """The problem's batch with lengths from T down to 1 (SELF_CHECK_BATCH of them), each sequence padded
    past its length with what must never be read (``padded``); and the lengths."""
    lengths = np.linspace(steps, 1, SELF_CHECK_BATCH).round().astype(int)
    params, xs, targets, *initial = problem
    last = module.LOSS_AT == "last"
    return (params, padded(xs, lengths), targets if last else padded(targets, lengths), *initial), lengths


def _check_lengths(module: types.ModuleType, problem: tuple, steps: int) -> None:
    """One batched call with ``lengths`` from T down to 1, padded with NaN, against its sequences alone."""
    args, lengths = ragged(module, problem, steps)
    result = _call(module, "loss_and_gradients", (*args, lengths), POISONS[0])
    against = f"its sequences one at a time at their own lengths {lengths.tolist()}"
    _compare(result, _one_at_a_time(module, problem, lengths), RTOL_EXACT, SCALE_FLOOR, against)


def _check_cut(module: types.ModuleType, cell: Cell) -> None:
    """The truncated runs where they cut, against SymPy's truncated chain rule at K = CUT, T = CUT + 1."""
    made_for = module.TRUNCATE
    setattr(module, "TRUNCATE", CUT)  # noqa: B010 (a module's global, which its runs read)
    try:
        problem = random_problem(module, CUT + 1, SYMPY_SIZES, SELF_CHECK_SEED)
        result = _call(module, "loss_and_gradients", problem, POISONS[0])
        expected = sympy_gradients(cell, *problem, truncate=CUT)
    finally:
        setattr(module, "TRUNCATE", made_for)  # noqa: B010
    _compare(result, expected, RTOL_EXACT, SCALE_FLOOR, f"SymPy's truncated chain rule (K = {CUT}, T = {CUT + 1})")


def _call(module: types.ModuleType, fn: str, problem: tuple, poison: float | None) -> Result:
    """``module.fn(*problem)`` with every work array the module allocates filled with ``poison``; with
    None, on the work arrays the module kept from its last call of this shape."""
    if poison is not None:
        module.release_workspaces()
        setattr(module, "_empty", lambda shape, dtype: np.full(shape, poison, dtype))  # noqa: B010
    try:
        return getattr(module, fn)(*problem)
    except Exception as e:  # a crash in our own output is our bug too
        raise SelfCheckError(_one_line(f"{fn} raised {type(e).__name__}: {e}")) from None


def _deterministic(module: types.ModuleType, problem: tuple, steps: int) -> Result:
    """The fast path's result, the same to the bit whatever its work arrays held before, finite, and a
    gradient of the right shape for every parameter and initial state.  The work arrays are new and
    poisoned for the first two calls; the last two reuse those the module kept, after a call on
    another problem, and the first result must not have changed (no gradient is one of them)."""
    first = _call(module, "loss_and_gradients", problem, POISONS[0])
    kept = copy.deepcopy(first)
    second = _call(module, "loss_and_gradients", problem, POISONS[1])
    _shaped(module, problem, first)
    for name, a, b in _rows(first, second):
        if not np.all(np.isfinite(a)):
            raise _not_finite(module, problem, name, steps)
        if not np.array_equal(a, b):
            raise SelfCheckError(f"{name}: two calls of loss_and_gradients differ at T = {steps} ({READ_BEFORE_WRITE})")
    other = random_problem(module, steps, distinct_sizes(module, SMALLEST_SIZE), SELF_CHECK_SEED + 1, SELF_CHECK_BATCH)
    _call(module, "loss_and_gradients", other, None)
    for name, a, b in _rows(kept, first):
        if not np.array_equal(a, b):
            raise SelfCheckError(
                f"{name}: a later call of loss_and_gradients changed the array it returned at T = {steps}"
            )
    again = _call(module, "loss_and_gradients", problem, None)
    for name, a, b in _rows(kept, again):
        if not np.array_equal(a, b):
            raise SelfCheckError(
                f"{name}: loss_and_gradients differs on the work arrays of an earlier call at T = {steps}"
            )
    return first


def _not_finite(module: types.ModuleType, problem: tuple, name: str, steps: int) -> SelfCheckError:
    """Why a result is not finite: the work arrays it read before writing (our bug), or, where it is
    not finite on zeroed work arrays too, the cell itself on the check's random problem."""
    clean = _call(module, "loss_and_gradients", problem, 0.0)
    if all(np.all(np.isfinite(a)) for _, a, _ in _rows(clean, clean)):
        return SelfCheckError(f"{name}: loss_and_gradients is not finite at T = {steps} ({READ_BEFORE_WRITE})")
    return CellNotFinite(
        f"{name} is not finite on the check's random problem at T = {steps}, whatever the work arrays hold: "
        "a function of the cell outside its domain (the log or sqrt of a negative number, a division by 0)? "
        "Keep such arguments positive (exp, softplus, sigmoid make them so)"
    )


def _shaped(module: types.ModuleType, problem: tuple, result: Any) -> None:
    """``result`` is (loss, grads) with exactly one gradient per parameter and initial state, each of its shape."""
    params = problem[0]
    shapes = {name: np.shape(params[name]) for name in module.PARAMS}
    shapes |= {key: np.shape(value) for key, value in zip(module.INITIAL, problem[3:])}
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise SelfCheckError("loss_and_gradients does not return (loss, grads)")
    if set(result[1]) != set(shapes):
        raise SelfCheckError(f"loss_and_gradients returns gradients for {sorted(result[1])}, not {sorted(shapes)}")
    for key, shape in shapes.items():
        if np.shape(result[1][key]) != shape:
            raise SelfCheckError(f"dJ/d{key}: loss_and_gradients returns shape {np.shape(result[1][key])}, not {shape}")


def _yardsticks(module: types.ModuleType, problem: tuple, steps: int) -> Iterator[tuple[str, tuple]]:
    """(name, (loss and gradients, tolerance, error floor)) of everything the fast path must equal."""
    if module.BY_DEFINITION and steps == module.STEPS:
        by_definition = _call(module, "gradients_by_definition", problem, POISONS[0])
        yield "gradients_by_definition", (by_definition, RTOL_EXACT, SCALE_FLOOR)
    if module.TRUNCATE is None or steps <= module.TRUNCATE:
        grads = finite_differences(module.loss, *problem, names=tuple(module.INITIAL))
        yield "finite differences", ((None, grads), RTOL_FD, FD_SCALE_FLOOR)


def _compare(result: Result, expected: tuple, tolerance: float, floor: float, against: str) -> None:
    for name, got, want in _rows(result, expected):
        if want is None:
            continue
        error = max_rel_error(got, want, floor)
        if not error <= tolerance:
            raise SelfCheckError(
                f"{name}: loss_and_gradients differs from {against} by {error:.1e} (tolerance {tolerance:.0e})"
            )


def _rows(a: tuple, b: tuple) -> Iterator[tuple[str, Any, Any]]:
    """(row, a's value, b's value) for the loss and every gradient, named as the derivation names them."""
    yield "J", a[0], b[0]
    for key, value in a[1].items():
        yield f"dJ/d{key}", value, b[1].get(key)
