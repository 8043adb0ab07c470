"""The checks a PyTorch or JAX module passes before it is written, and ``bptt verify --target``.

On the NumPy self-check's problem (every dimension a size of its own, two sequences, each
step count of ``check_steps``), in float64:

- the module's ``loss_and_gradients`` equals the NumPy module's (which has passed its own
  self-check) to RTOL_TARGET, loss and every gradient; its sequences run one at a time,
  unbatched, give the same (RTOL_EXACT), and so does the module in float32 (RTOL_FLOAT32);
- the framework's own gradient checker passes on the derived backward:
  ``torch.autograd.gradcheck`` on ``Loss`` (a function of the parameters and initial
  states), ``jax.test_util.check_grads`` on the ``custom_vjp``;
- the framework's autograd through ``autograd_loss`` (the same forward, no derived
  backward) gives the same gradients (RTOL_TARGET); for JAX under ``jit`` too.  Not for
  truncated BPTT, whose gradient is by design not the forward's: there the NumPy module,
  whose truncation is checked against SymPy's truncated chain rule, is the yardstick.

Any disagreement, crash or missing framework is one line: ``TargetError``
(``TargetUnavailable`` where the framework is not installed).
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from derive.verify.report import (
    RTOL_EXACT,
    RTOL_FLOAT32,
    SCALE_FLOOR,
    distinct_sizes,
    in_dtype,
    load_module,
    max_rel_error,
    random_problem,
)
from derive.verify.selfcheck import (
    SELF_CHECK_BATCH,
    SELF_CHECK_SEED,
    SMALLEST_SIZE,
    batch_of,
    check_steps,
    one_sequence,
    ragged,
)

RTOL_TARGET = RTOL_EXACT  # a target against the NumPy module and against its framework's autograd: float64 rounding
GRADCHECK_ATOL = 1e-6  # torch.autograd.gradcheck's and jax's check_grads' tolerances here (float64, central
GRADCHECK_RTOL = 1e-3  # differences): tighter than gradcheck's default atol 1e-5
INSTALL = {"torch": "pip install 'bptt-derive[torch]'", "jax": "pip install 'bptt-derive[jax]'"}
PACKAGE = {"torch": "PyTorch", "jax": "JAX"}
CHECKER = {"torch": "torch.autograd.gradcheck", "jax": "jax.test_util.check_grads"}


class TargetError(Exception):
    """A framework module that failed its check; the message says what disagreed."""


class TargetUnavailable(TargetError):
    """The target's framework is not installed."""


def framework(name: str) -> types.ModuleType:
    """The framework's module (torch, jax), or ``TargetUnavailable`` saying how to install it."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise TargetUnavailable(f"--target {name} needs {PACKAGE[name]}: {INSTALL[name]}") from None
    if name == "jax":
        module.config.update("jax_enable_x64", True)  # the checks are in float64
    return module


@dataclass(frozen=True)
class Check:
    """One comparison: what against what, at which T, its max relative error and its tolerance."""

    name: str
    steps: int
    error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


Result = tuple[float, dict[str, np.ndarray]]


def _as_numpy(result: tuple[Any, dict[str, Any]]) -> Result:
    loss, grads = result
    return float(np.asarray(loss)), {k: np.asarray(v.detach() if hasattr(v, "detach") else v) for k, v in grads.items()}


def _error(got: Result, want: Result) -> float:
    """The largest relative error over the loss and every gradient; inf where a name is missing or extra."""
    if set(got[1]) != set(want[1]):
        return float("inf")
    errors = [max_rel_error(np.asarray(got[0]), np.asarray(want[0]), SCALE_FLOOR)]
    errors += [max_rel_error(got[1][k], want[1][k], SCALE_FLOOR) for k in want[1]]
    return max(errors)


def check_target(target: str, source: str, numpy_module: types.ModuleType, name: str = "checked") -> list[Check]:
    """Every check of the module ``source`` for ``target`` against ``numpy_module``; raises ``TargetError``
    where the module does not load or breaks a check."""
    fw = framework(target)
    try:
        module = load_module(source, f"{name}_{target}")
        checks = []
        for steps in check_steps(numpy_module):
            problem = random_problem(
                numpy_module, steps, distinct_sizes(numpy_module, SMALLEST_SIZE), SELF_CHECK_SEED, SELF_CHECK_BATCH
            )
            checks += RUNNERS[target](fw, module, numpy_module, problem, steps)
        return checks
    except TargetError:
        raise
    except Exception as e:
        raise TargetError(" ".join(f"the {target} module broke its check: {type(e).__name__}: {e}".split())) from None


def failed(checks: list[Check]) -> str | None:
    """The first failed check as one line, or None."""
    bad = next((c for c in checks if not c.passed), None)
    if bad is None:
        return None
    return f"{bad.name} at T = {bad.steps}: max relative error {bad.error:.2e} > {bad.tolerance:.0e}"


def format_checks(checks: list[Check]) -> str:
    """One row per check and T: its error against its tolerance ("pass"/"FAIL" for the gradient checkers)."""
    width = max(len(c.name) for c in checks)
    rows = []
    for c in checks:
        verdict = "ok" if c.passed else "MISMATCH"
        error = ("pass" if c.passed else "FAIL") if c.tolerance == 0 else f"{c.error:.1e} (tol {c.tolerance:.0e})"
        rows.append(f"  {c.name:<{width}}  T = {c.steps}  {error:<20}  {verdict}")
    return "\n".join(rows)


# ---- PyTorch -------------------------------------------------------------------------


def _to(convert: Callable[[np.ndarray], Any], value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to(convert, v) for k, v in value.items()}
    return convert(np.asarray(value))


def _contract_checks(module: types.ModuleType, numpy_module: types.ModuleType, problem: tuple, steps: int, convert):
    """(The module's float64 result, the checks every target passes): equal to the NumPy module; the
    same as its sequences run one at a time, unbatched; and as itself in float32."""

    def run(values: tuple) -> Result:
        return _as_numpy(module.loss_and_gradients(*(_to(convert, v) for v in values)))

    got = run(problem)
    one = batch_of(module, [run(one_sequence(numpy_module, problem, b)) for b in range(SELF_CHECK_BATCH)])
    return got, [
        Check("equal to the NumPy module", steps, _error(got, numpy_module.loss_and_gradients(*problem)), RTOL_TARGET),
        Check("its sequences one at a time", steps, _error(one, got), RTOL_EXACT),
        Check("its float64 self in float32", steps, _error(run(in_dtype(problem, np.float32)), got), RTOL_FLOAT32),
    ]


def _torch_checks(torch: Any, module: types.ModuleType, numpy_module: types.ModuleType, problem: tuple, steps: int):
    tensors = [_to(torch.as_tensor, v) for v in problem]
    got, checks = _contract_checks(module, numpy_module, problem, steps, torch.as_tensor)
    checks.append(
        Check(
            "with lengths, equal to the NumPy module",
            steps,
            _lengths_error(torch, module, numpy_module, problem, steps),
            RTOL_TARGET,
        )
    )
    through_loss = _torch_autograd(torch, module, tensors, module.loss)  # loss(...).backward(): the Loss Function
    checks.append(Check("torch autograd through Loss", steps, _error(got, through_loss), RTOL_TARGET))
    if module.TRUNCATE is not None:  # autograd of the forward is the full gradient, not the truncated one
        return checks
    autograd = _torch_autograd(torch, module, tensors, module.autograd_loss)
    checks.append(Check("torch autograd of autograd_loss", steps, _error(got, autograd), RTOL_TARGET))
    checks.append(Check("torch.autograd.gradcheck of Loss", steps, _torch_gradcheck(torch, module, tensors), 0.0))
    return checks


def _lengths_error(torch: Any, module: types.ModuleType, numpy_module: types.ModuleType, problem: tuple, steps: int):
    """One padded batch with lengths from T down to 1 (NaN past each, labels -1), against the NumPy module's
    lengths path (itself checked against its sequences alone)."""
    args, lengths = ragged(numpy_module, problem, steps)
    want = numpy_module.loss_and_gradients(*args, lengths=lengths)
    got = module.loss_and_gradients(*(_to(torch.as_tensor, v) for v in args), lengths=torch.as_tensor(lengths))
    return _error(_as_numpy(got), want)


def _torch_leaves(torch: Any, module: types.ModuleType, tensors: list) -> tuple[list, Callable]:
    """The parameters and initial states as leaves that need a gradient, and a function of them."""
    params, xs, targets, *initial = tensors
    names = [*module.PARAMS, *module.INITIAL]
    leaves = [params[n].clone().requires_grad_() for n in module.PARAMS]
    leaves += [s.clone().requires_grad_() for s in initial]

    def of(fn: Callable) -> Callable:
        def call(*values: Any) -> Any:
            by_name = dict(zip(names, values))
            return fn({n: by_name[n] for n in module.PARAMS}, xs, targets, *(by_name[n] for n in module.INITIAL))

        return call

    return leaves, of


def _torch_autograd(torch: Any, module: types.ModuleType, tensors: list, fn: Callable) -> Result:
    """The loss and torch.autograd's gradients of ``fn`` (``loss``: through Loss, the derived backward;
    ``autograd_loss``: op by op)."""
    leaves, of = _torch_leaves(torch, module, tensors)
    loss = of(fn)(*leaves)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [*module.PARAMS, *module.INITIAL]
    grads = [torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)]
    return float(loss.detach()), {n: g.numpy() for n, g in zip(names, grads)}


def _torch_gradcheck(torch: Any, module: types.ModuleType, tensors: list) -> float:
    """0 where gradcheck passes on Loss, else inf (gradcheck says no more than pass or fail)."""
    leaves, of = _torch_leaves(torch, module, tensors)
    ok = torch.autograd.gradcheck(
        of(module.loss), tuple(leaves), atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL, raise_exception=False
    )
    return 0.0 if ok else float("inf")


# ---- JAX -----------------------------------------------------------------------------


def _jax_checks(jax: Any, module: types.ModuleType, numpy_module: types.ModuleType, problem: tuple, steps: int):
    arrays = [_to(jax.numpy.asarray, v) for v in problem]
    got, checks = _contract_checks(module, numpy_module, problem, steps, jax.numpy.asarray)
    for label, jit in (("jax.grad of the custom_vjp", False), ("jax.jit(jax.grad) of the custom_vjp", True)):
        checks.append(Check(label, steps, _error(got, _jax_grad(jax, module, module.loss, arrays, jit)), RTOL_TARGET))
    if module.TRUNCATE is not None:  # autograd of the forward and check_grads: the full gradient, not the truncated
        return checks
    autograd = _jax_grad(jax, module, module.autograd_loss, arrays, False)
    checks.append(Check("jax.grad of autograd_loss", steps, _error(got, autograd), RTOL_TARGET))
    checker = _jax_check_grads(jax, module, arrays)
    checks.append(Check("jax.test_util.check_grads of the custom_vjp", steps, checker, 0.0))
    return checks


def _jax_function(module: types.ModuleType, fn: Callable, arrays: list) -> tuple[tuple, Callable]:
    params, xs, targets, *initial = arrays

    def of(weights: dict, states: tuple) -> Any:
        return fn(weights, xs, targets, *states)

    return (params, tuple(initial)), of


def _jax_grad(jax: Any, module: types.ModuleType, fn: Callable, arrays: list, jit: bool) -> Result:
    args, of = _jax_function(module, fn, arrays)
    value_and_grad = jax.value_and_grad(of, argnums=(0, 1))
    loss, (dparams, dinitial) = (jax.jit(value_and_grad) if jit else value_and_grad)(*args)
    grads = {k: np.asarray(v) for k, v in dparams.items()}
    grads |= {n: np.asarray(v) for n, v in zip(module.INITIAL, dinitial)}
    return float(loss), grads


def _jax_check_grads(jax: Any, module: types.ModuleType, arrays: list) -> float:
    from jax.test_util import check_grads

    args, of = _jax_function(module, module.loss, arrays)
    try:
        check_grads(of, args, order=1, modes=("rev",), atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL)
    except AssertionError:
        return float("inf")
    return 0.0


RUNNERS = {"torch": _torch_checks, "jax": _jax_checks}
