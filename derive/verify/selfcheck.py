"""The check every generated NumPy module passes before it is written.

A wrong gradient that nobody notices is the worst thing this tool can produce, so no
command writes a module that has not been run.  On a small seeded problem (every
dimension a size of its own, B = SELF_CHECK_BATCH sequences) the fast path
``loss_and_gradients`` is

- run twice with its work arrays poisoned, once with NaN and once with a finite
  value (the template allocates every array it fills before reading through one
  function, ``_empty``, which the check replaces): a read before a write shows as a
  NaN, or as two calls that are not bitwise identical;
- compared with central differences of the module's ``loss``, where the gradient at
  that T is the full one (not truncated, or T <= K);
- compared with ``gradients_by_definition``, where that was generated for this T.

The steps checked: SELF_CHECK_STEPS, the derived T where the by-definition path is
short enough to run, and with truncation K the first T past it (K + 1).  Past the
truncation, where the derived T is not that T, only the poisoned runs are made:
finite differences measure the full gradient there.

A disagreement is a bug of ours; ``SelfCheckError`` says which gradient and by how much.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from derive.verify.report import (
    FD_SCALE_FLOOR,
    RTOL_EXACT,
    RTOL_FD,
    SCALE_FLOOR,
    distinct_sizes,
    finite_differences,
    max_rel_error,
    random_problem,
)

SELF_CHECK_STEPS = 3
SELF_CHECK_BATCH = 2
SELF_CHECK_SEED = 20261130
DEFINITION_MAX_STEPS = 6  # the by-definition path's cost grows as T^3 (more for gated cells)
POISONS = (np.nan, 0.5)  # the second is finite: a read masked from NaN (np.fmax, where=) still differs
READ_BEFORE_WRITE = "it reads a work array before writing it"

Result = tuple[float, dict[str, np.ndarray]]


class SelfCheckError(Exception):
    """A generated module that failed its self-check; the message says what disagreed."""


def check_steps(module: types.ModuleType) -> list[int]:
    """The sequence lengths the module is run at, in increasing order."""
    steps = {SELF_CHECK_STEPS}
    if module.BY_DEFINITION and module.STEPS <= DEFINITION_MAX_STEPS:
        steps.add(module.STEPS)
    if module.TRUNCATE is not None:
        steps.add(module.TRUNCATE + 1)
    return sorted(steps)


def self_check(module: types.ModuleType) -> None:
    """Raise ``SelfCheckError`` where the module's fast path is wrong; see the module docstring."""
    for steps in check_steps(module):
        problem = random_problem(module, steps, distinct_sizes(module), SELF_CHECK_SEED, SELF_CHECK_BATCH)
        with np.errstate(all="ignore"):
            result = _deterministic(module, problem, steps)
            for name, (expected, tolerance, floor) in _yardsticks(module, problem, steps):
                _compare(result, expected, tolerance, floor, f"{name} at T = {steps}")


def _call(module: types.ModuleType, fn: str, problem: tuple, poison: float) -> Result:
    """``module.fn(*problem)`` with every work array the module allocates filled with ``poison``."""
    setattr(module, "_empty", lambda shape, dtype: np.full(shape, poison, dtype))  # noqa: B010
    try:
        return getattr(module, fn)(*problem)
    except Exception as e:  # a crash in our own output is our bug too
        raise SelfCheckError(f"{fn} raised {type(e).__name__}: {e}") from None


def _deterministic(module: types.ModuleType, problem: tuple, steps: int) -> Result:
    """The fast path's result, the same to the bit whatever its work arrays held before, and finite."""
    first, second = (_call(module, "loss_and_gradients", problem, poison) for poison in POISONS)
    for name, a, b in _rows(first, second):
        if not np.all(np.isfinite(a)):
            raise SelfCheckError(f"{name}: loss_and_gradients is not finite at T = {steps} ({READ_BEFORE_WRITE})")
        if not np.array_equal(a, b):
            raise SelfCheckError(f"{name}: two calls of loss_and_gradients differ at T = {steps} ({READ_BEFORE_WRITE})")
    return first


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
