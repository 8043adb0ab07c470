"""``bptt check``: a user's own hand-written gradient code against the derivation, and, where it is
wrong, what is most likely wrong with it.

The code is loaded from its file without running its top level (``load``), made into a
``code.Code`` whose arguments and weights are bound by name (``bind``, ``weights``), and its
conventions are found by running it (``targets`` for a loss function, ``layer`` for a forward and
a backward).  It is then called on seeded random problems at several T in float64, and its loss
(or forward) and gradients are compared with the derived module's (``yardstick``, which
``bptt verify`` checks against a reference loop, finite differences and SymPy).  A gradient that
does not match is compared with the derivation's gradients with one thing done wrong
(``suspects``); the first that matches is the diagnosis, and failing all of them, a clipped or
scaled gradient, or the T at which it first goes wrong.  This module runs those steps and writes
the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from derive.derivation.pipeline import Derivation
from derive.ir import naming
from derive.ir.cell import Cell
from derive.tools.check.code import Code
from derive.tools.check.layer import LayerTarget, layer_cell
from derive.tools.check.load import CheckError, Skip, load_file, parse_target, resolve
from derive.tools.check.problem import SEED, Grads, Problem, forward_values, input_gradient
from derive.tools.check.suspects import Suspect, suspects
from derive.tools.check.targets import CHECK_RTOL, Checked, LossTarget, error
from derive.tools.check.yardstick import Yardstick
from derive.verify.report import max_rel_error

CHECK_STEPS = (1, 2, 3, 5, 9)  # the diagnosis runs at the last: long enough to tell K = 1..8 apart
CHECK_MAX_STEPS = 20


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
    kind: str  # "loss function" or "layer"
    steps: tuple[int, ...]
    rows: list[Row]
    unchecked: list[str]  # the user's gradients of weights the cell does not have
    found: list[str]  # the conventions found by running the code, in words
    skipped: list[Skip]  # the file's top-level statements not run
    truncate: int | None = None  # checked against BPTT truncated to this many steps
    truncated: int | None = None  # the code is BPTT truncated to this many steps
    notes: list[str] = field(default_factory=list)  # what was not compared, and why
    spec: str = ""  # the --cell a user passes for this cell: a built-in's name, or the .cell file's path

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)


def _clipped(user: np.ndarray, right: np.ndarray) -> float | None:
    """c where user = clip(right, -c, c) and some entries were clipped; None otherwise."""
    if user.shape != right.shape:
        return None
    c = float(np.max(np.abs(user)))
    if not 0 < c < float(np.max(np.abs(right))):
        return None
    return c if max_rel_error(user, np.clip(right, -c, c)) <= CHECK_RTOL else None


def _fraction(c: float) -> int | None:
    """n where c = 1/n, n >= 2 (to the check's tolerance); None otherwise."""
    n = round(1 / c) if abs(c) > 1e-12 else 0
    return n if n >= 2 and abs(n * c - 1) <= CHECK_RTOL else None


def _factor(c: float, steps: int) -> tuple[str, str]:
    """c as the user's loss likely has it: ("1/5 of", "a mean over the 5 steps"), ("0.3 times", ...)."""
    n = _fraction(c)
    if n is None:
        return f"{c:.6g} times", "a factor in the loss"
    if n == steps:
        why = f"a mean over the {steps} steps"
    elif steps > 1 and n % steps == 0:
        why = f"a mean over N·T = {n // steps}·{steps}"
    else:
        why = "a 1/2 in the loss" if n == 2 else "a factor in the loss"
    return f"1/{n} of", why


def _scaled(user: np.ndarray, right: np.ndarray, hint: float | None = None) -> float | None:
    """c where user = c * right (c not 1): the ``hint`` (the losses' ratio), else c by least squares,
    made exactly 1/n where it is one; None otherwise."""
    if user.shape != right.shape or not np.any(right):
        return None
    fitted = float(np.vdot(user, right) / np.vdot(right, right))
    for c in (hint, fitted):
        if c is None or abs(c - 1) < 1e-3 or abs(c) < 1e-12:
            continue
        n = _fraction(c)
        c = 1 / n if n is not None else c
        if max_rel_error(user, c * right) <= CHECK_RTOL:
            return c
    return None


def _matched(name: str, user: np.ndarray, found: list[Suspect]) -> Suspect | None:
    """The first suspect whose gradient of ``name`` is the user's."""
    return next((s for s in found if name in s.grads and max_rel_error(user, s.grads[name]) <= CHECK_RTOL), None)


def _scaled_suspect(
    name: str, user: np.ndarray, found: list[Suspect], hint: float | None
) -> tuple[float, Suspect] | None:
    """(c, s) where user = c * (suspect s's gradient): a constant factor (a mean) besides one mistake."""
    for s in found:
        if name in s.grads and (c := _scaled(user, s.grads[name], hint)) is not None:
            return c, s
    return None


def diagnose(
    name: str,
    user: np.ndarray,
    right: np.ndarray,
    found: list[Suspect],
    first_wrong: int,
    steps: tuple[int, ...],
    loss_ratio: float | None = None,
) -> str:
    """What is most likely wrong with the user's gradient of ``name`` at the longest of the ``steps``
    checked (where it first goes wrong at ``first_wrong``; user loss / right loss ``loss_ratio``): a
    suspect, a clipped or scaled right gradient, a suspect times a factor (a mean), or failing these,
    where it starts to go wrong."""
    shortest = min(steps)
    if not np.all(np.isfinite(user)):
        return "has NaN or infinite entries"
    if user.shape != right.shape:
        if user.shape == right.shape[::-1] and max_rel_error(user, right.T) <= CHECK_RTOL:
            return f"has shape {user.shape}, the transpose of {right.shape}: the outer product's factors are swapped"
        return f"has shape {user.shape}; {name} is {right.shape}"
    if (s := _matched(name, user, found)) is not None:
        return f"{s.says}. Missing: {s.term}"
    if (c := _clipped(user, right)) is not None:
        return f"is clipped to [-{c:.3g}, {c:.3g}]: compare gradients before clipping them"
    if (c := _scaled(user, right, loss_ratio)) is not None:
        amount, why = _factor(c, max(steps))
        return f"is {amount} the right gradient ({why})"
    if (scaled := _scaled_suspect(name, user, found, loss_ratio)) is not None:
        amount, why = _factor(scaled[0], max(steps))
        return f"is {amount} the gradient ({why}); besides that, it {scaled[1].says}. Missing: {scaled[1].term}"
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
    explicit: dict[str, str] | None = None,
    steps: tuple[int, ...] = CHECK_STEPS,
    truncate: int | None = None,
    run: bool = False,
) -> CheckReport:
    """Check the code ``target`` names against ``cell`` at each T of ``steps`` (``truncate``: against
    BPTT truncated to that many steps; ``run``: import the file whole instead of its definitions)."""
    parsed = parse_target(target)
    loaded = load_file(parsed.path, run=run)
    codes = [
        Code(loaded.module, f.obj, f.owner, f.name, cell, explicit or {})
        for f in map(partial(resolve, loaded), parsed.names)
    ]
    if len(codes) == 1:
        checked, yardstick, sequences = _loss_function(codes[0], cell, steps, truncate)
    else:
        checked, yardstick, sequences = _layer(codes[0], codes[1], cell, steps, truncate)
    compared = _compare(checked, yardstick, sequences)
    rows = [Row(k, e, e <= CHECK_RTOL) for k, e in compared.errors.items()]
    truncated = _diagnose_gradients(rows, compared, yardstick.derivation, steps)
    if compared.last_loss is not None:
        _diagnose_loss(rows[0], compared.last_loss)
    kind = "layer" if len(codes) == 2 else "loss function"
    return CheckReport(
        target,
        cell.name,
        kind,
        steps,
        rows,
        list(checked.code.absent),
        checked.found(),
        list(loaded.skips),
        truncate,
        truncated,
        compared.notes,
        cell.argument,
    )


def _loss_function(
    code: Code, cell: Cell, steps: tuple[int, ...], truncate: int | None
) -> tuple[Checked, Yardstick, list[Problem]]:
    _require_supported_shape(cell)
    _require_weights(code, cell.param_names)
    yardstick = Yardstick(cell, max(steps), truncate)
    target = LossTarget(code, cell, yardstick, SEED)
    rng = np.random.default_rng(SEED)
    return target, yardstick, [target.problem(t, rng) for t in steps]


def _layer(
    forward: Code, backward: Code, cell: Cell, steps: tuple[int, ...], truncate: int | None
) -> tuple[Checked, Yardstick, list[Problem]]:
    _require_no_delays(cell)
    _require_weights(forward, layer_cell(cell).param_names)
    layer = LayerTarget(forward, backward, cell, SEED)
    _require_weights(forward, layer.cell.param_names)
    yardstick = Yardstick(layer.cell, max(steps), truncate)
    rng = np.random.default_rng(SEED)
    return layer, yardstick, [layer.problem(t, rng) for t in steps]


def _require_weights(code: Code, params: tuple[str, ...]) -> None:
    missing = code.missing(params)
    if missing:
        raise CheckError(
            f"{code.label}: none of its names is {', '.join(missing)} (it reads "
            f"{', '.join(code.blocks) or 'no weight by a name bptt check knows'}); "
            "map yours with --map NAME=PARAM"
        )


def _require_supported_shape(cell: Cell) -> None:
    if (len(cell.inputs), len(cell.targets), cell.loss_mode) != (1, 1, "every"):
        raise CheckError(f"{cell.name}: bptt check takes cells with one input and one target at every step for now")
    _require_no_delays(cell)


def _require_no_delays(cell: Cell) -> None:
    """A cell that reads h[t-2] or x[t-1]: the forms a user's code may take (what it starts from, what
    it keeps between steps) are not searched for those yet, so it is refused rather than misjudged."""
    if cell.delays:
        delay = cell.delays[0]
        raise CheckError(
            f"{cell.where(delay.name) or cell.name}: bptt check does not take a cell that reads further back "
            f"than the previous step ({delay.read_as}) yet; bptt derive writes and verifies its gradients"
        )


@dataclass
class _Comparison:
    """The user's loss and gradients against the derivation's over the problems: the largest
    relative error of each, the shortest T at which each gradient is wrong, the last problem (as the
    code computes it) with (user, right) gradients and (user, right) loss (None when the code
    returns no loss), and what the report must say of what was not compared."""

    errors: dict[str, float]
    first_wrong: dict[str, int]
    last: tuple[Problem, Grads, Grads]
    last_loss: tuple[Problem, float, float] | None
    notes: list[str]


def _compare(checked: Checked, yardstick: Yardstick, sequences: list[Problem]) -> _Comparison:
    """The code on each problem as drawn; the derivation on the problem as the code computes it."""
    errors: dict[str, float] = {}
    last: tuple[Problem, Grads, Grads] | None = None
    last_loss: tuple[Problem, float, float] | None = None
    first_wrong: dict[str, int] = {}  # the shortest T at which a gradient is wrong
    for problem in sequences:
        got = checked.answer(problem)
        _require_gradients(checked, yardstick.cell, got.grads)
        as_run = checked.as_run(problem)
        want_loss, want = _right(checked, yardstick, as_run, got.grads)
        if got.loss is not None:
            errors["loss"] = max(errors.get("loss", 0.0), error(got.loss, want_loss))
            last_loss = (as_run, got.loss, want_loss)
        if got.states is not None:
            right = forward_values(yardstick.cell, as_run)[checked.readout]
            errors["forward"] = max(errors.get("forward", 0.0), error(got.states, right))
        for p in [*yardstick.cell.param_names, *(k for k in want if k not in yardstick.cell.param_names)]:
            if p in got.grads:  # an initial state or the inputs need not be returned
                errors[p] = max(errors.get(p, 0.0), error(got.grads[p], want[p]))
                if errors[p] > CHECK_RTOL:
                    first_wrong.setdefault(p, problem.steps)
        last = (as_run, got.grads, want)
    assert last is not None
    return _Comparison(errors, first_wrong, last, last_loss, _not_compared(checked, yardstick, last[1], last[2]))


def _require_gradients(checked: Checked, cell: Cell, grads: Grads) -> None:
    missing = [p for p in cell.param_names if p not in grads]
    if missing:
        label = getattr(checked, "backward", checked.code).label
        raise CheckError(
            f"{label} returned no gradient of {', '.join(missing)} that bptt check could find "
            "(by name, by shape, or left on its object); map a name with --map NAME=PARAM"
        )


def _right(checked: Checked, yardstick: Yardstick, problem: Problem, user: Grads) -> tuple[float, Grads]:
    """The derivation's loss and gradients, the inputs' where the code returns them (not under
    truncation), and zero for an initial state the code takes and ignores."""
    loss, want = yardstick.answer(problem)
    if "x" in user and yardstick.derivation.truncate is None:
        want["x"] = input_gradient(yardstick.cell, problem, checked.readout)
    for name in checked.ignored():
        want[name] = np.zeros_like(want[name])
    return loss, want


def _not_compared(checked: Checked, yardstick: Yardstick, user: Grads, want: Grads) -> list[str]:
    """What a layer's backward does not return (h0, the inputs' gradient), or what truncation leaves out."""
    if checked.readout == "":
        return []
    taken = [naming.initial_arg(s.name) for i, s in enumerate(yardstick.cell.states) if i in checked.code.taken_states]
    notes = [f"{k}: not returned by the backward, not checked" for k in taken if k not in user]
    if "x" in user and yardstick.derivation.truncate is not None:
        notes.append("x: the inputs' gradient is not compared against truncated BPTT (it is derived in full only)")
    return notes


def _diagnose_gradients(
    rows: list[Row], compared: _Comparison, derivation: Derivation, steps: tuple[int, ...]
) -> int | None:
    """A diagnosis for each wrong gradient, from the suspects at the last (longest) problem; K when the
    code is BPTT truncated to K steps."""
    if all(r.ok for r in rows if r.name != "loss"):
        return None
    problem, user, want = compared.last
    params = derivation.cell.param_names
    found = _joint_first([r for r in rows if r.name in params], user, suspects(derivation, problem, max(steps), want))
    ratio = _loss_ratio(compared.last_loss)
    for r in rows:
        if not r.ok and r.name in derivation.cell.param_names:
            r.diagnosis = diagnose(
                r.name, user[r.name], want[r.name], found, compared.first_wrong[r.name], steps, ratio
            )
    return truncated_at([r for r in rows if r.name in params], user, found)


def _joint_first(rows: list[Row], user: Grads, found: list[Suspect]) -> list[Suspect]:
    """The suspects, the first that explains every wrong gradient of ``rows`` at once put first: one mistake
    (no carry at all) is said for all of them rather than a narrower one (no carry of h) that
    happens to fit a few."""
    wrong = [r.name for r in rows if not r.ok and r.name in user]
    joint = next((s for s in found if wrong and all(_matched(n, user[n], [s]) for n in wrong)), None)
    return found if joint is None else [joint, *(s for s in found if s is not joint)]


TRUNCATIONS = re.compile(r"truncate(\d+)|recurrence")


def truncated_at(rows: list[Row], user: Grads, found: list[Suspect]) -> int | None:
    """K when every wrong gradient is that of BPTT truncated to K steps (K = 1: the recurrence left out)."""
    wrong = [r.name for r in rows if not r.ok]
    if not wrong or any(name not in user for name in wrong):
        return None
    for s in found:
        if (m := TRUNCATIONS.fullmatch(s.key)) and all(_matched(n, user[n], [s]) for n in wrong):
            return int(m.group(1) or 1)
    return None


def _loss_ratio(last_loss: tuple[Problem, float, float] | None) -> float | None:
    """user loss / right loss at the last problem (None if the code returns no loss): a factor shows here first."""
    if last_loss is None:
        return None
    _, user_loss, want_loss = last_loss
    return user_loss / want_loss if want_loss else None


def _diagnose_loss(loss_row: Row, last_loss: tuple[Problem, float, float]) -> None:
    """What is wrong with the user's loss: a factor (a mean is a convention, found before), or else."""
    if loss_row.ok:
        return
    problem = last_loss[0]
    ratio = _loss_ratio(last_loss)
    n = _fraction(ratio) if ratio is not None else None
    if n is not None:
        amount, why = _factor(1 / n, problem.steps)
        loss_row.diagnosis = f"is {amount} the derivation's J = sum_t J_t ({why})"
    else:
        loss_row.diagnosis = "differs from the derivation's J = sum_t J_t: the forward pass is not the cell's"


def skipped_words(skipped: list[Skip]) -> str:
    """The top-level statements not run, in a line: each that does I/O, loops or calls, and the
    ones that failed for want of a name a skipped one defines, counted."""
    needy = [s for s in skipped if s.why.startswith("raised NameError")]
    said = [str(s) for s in skipped if s not in needy]
    if needy:
        said.append(f"and {len(needy)} that need what those define (lines {', '.join(str(s.line) for s in needy)})")
    return "; ".join(said)


def format_report(report: CheckReport) -> str:
    against = f"BPTT truncated to K = {report.truncate} steps" if report.truncate else "full BPTT"
    lines = [
        f"bptt check {report.target} ({report.kind}) against the {report.cell} cell, {against}, "
        f"T = {', '.join(map(str, report.steps))}, float64",
    ]
    if report.skipped:
        lines.append(f"  not run: {skipped_words(report.skipped)}")
    lines += [f"  {'found:' if i == 0 else '':<7}{said}" for i, said in enumerate(report.found)]
    lines.append(f"  {'':<8} {'max rel error':>14}  verdict (tolerance {CHECK_RTOL:.0e})")
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
                f"(the derivation: bptt derive --cell {report.spec or report.cell} --steps {max(report.steps)} writes "
                f"{naming.file_stem(report.cell, max(report.steps), None)}.tex)"
            )
    if report.unchecked:
        lines.append(
            f"\nnot in the {report.cell} cell (set to zero, gradients not checked): {', '.join(report.unchecked)}"
        )
    if report.notes:
        lines.append("")
        lines += report.notes
    if report.truncated and report.truncated > 1:  # K = 1, no recurrence at all, is said as such
        lines.append(
            f"\nthis is truncated BPTT with K = {report.truncated}: "
            f"with --truncate {report.truncated} it is checked as such"
        )
    lines.append("\nall gradients match" if report.passed else "\nsome gradients do not match")
    return "\n".join(lines)
