"""Stage 3: expand dJ_t/dW into its chain-rule terms, one ordered product per path.

For a loss J_t and a quantity w (a parameter, or an initial state such as h_0),
each term of dJ_t/dw is one path from J_t down the unrolled graph to w, written as
the ordered product of the partial derivatives along it, e.g. for the seed model

    dJ_3/dp_3 dp_3/dy_3 dy_3/dh_3 dh_3/dz_3 dz_3/dh_2 dh_2/dz_2 dz_2/dW_hh.

Terms are listed shortest first, which for a single-state cell is k = t, t-1,
..., 1 (the step k where w enters).  This is the paper derivation, kept as data:
``latex`` prints it, the by-definition NumPy path computes it literally, and
``adjoint`` checks the efficient recurrence against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import naming
from .cell import Cell
from .unroll import Unrolled, symbols_in


@dataclass(frozen=True)
class Factor:
    """The partial derivative d num / d den of one edge of the unrolled graph."""

    num: str
    den: str


@dataclass(frozen=True)
class Term:
    """One chain-rule path from J_t to the differentiated quantity."""

    loss_step: int
    factors: tuple[Factor, ...]

    @property
    def entry_step(self) -> int:
        """k: the step of the node through which the differentiated quantity enters."""
        return naming.step_of(self.factors[-1].num)


@dataclass(frozen=True)
class Expansion:
    """dJ/dw = sum_t dJ_t/dw, each dJ_t/dw a sum of terms; ``per_loss[i]`` holds those of the i-th loss
    (J_{i+1}, or J_T alone for a many-to-one cell)."""

    wrt: str
    per_loss: tuple[tuple[Term, ...], ...]

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(term for terms in self.per_loss for term in terms)

    def count(self) -> int:
        return sum(len(terms) for terms in self.per_loss)


def paths(unrolled: Unrolled, top: str, wrt: str) -> list[tuple[Factor, ...]]:
    """Every path from node ``top`` to symbol ``wrt``, shortest first (an explicit stack: T can be long)."""
    found: list[tuple[Factor, ...]] = []
    stack: list[tuple[str, tuple[Factor, ...]]] = [(top, ())]
    while stack:
        node, prefix = stack.pop()
        for arg in reversed(unrolled.deps.get(node, ())):
            step = prefix + (Factor(node, arg),)
            if arg == wrt:
                found.append(step)
            elif arg in unrolled.deps:
                stack.append((arg, step))
    found.reverse()
    return sorted(found, key=len)


def expand(unrolled: Unrolled, wrt: str) -> Expansion:
    """The chain-rule expansion of dJ/d``wrt`` over all T losses."""
    per_loss = tuple(
        tuple(Term(naming.step_of(loss.name), factors) for factors in paths(unrolled, loss.name, wrt))
        for loss in unrolled.losses
    )
    return Expansion(wrt, per_loss)


def differentiable_names(cell: Cell) -> tuple[str, ...]:
    """What the gradient is taken with respect to: the parameters, then the initial states (``h@0``)."""
    return cell.param_names + tuple(naming.step_name(s.name, 0) for s in cell.states)


def expand_all(unrolled: Unrolled) -> dict[str, Expansion]:
    return {wrt: expand(unrolled, wrt) for wrt in differentiable_names(unrolled.cell)}


# ---- the same sums, factorized over time (single-state cells) ---------------------------


@dataclass(frozen=True)
class Factorized:
    """dJ_t/dw for any t, with the one-step state Jacobian as the repeated factor.

    For a cell with one state s:

        dJ_t/dw = sum(direct) + sum_{k=1}^{t} head_t (step_t step_{t-1} ... step_{k+1}) tail_k

    where ``head`` are the paths from J_t to s_t, ``step`` the paths from s_j to
    s_{j-1} inside step j, ``tail`` the paths from s_k to w inside step k, and
    ``direct`` the paths from J_t to w that do not pass through s_t.  Each is a
    tuple of alternative paths (a sum), written at the symbolic steps t, j, k.
    For an initial state w = s_0 the tail is empty and k = 0 is the only term.
    """

    wrt: str
    state: str
    last: bool  # many-to-one: only J_T enters J
    head: tuple[tuple[Factor, ...], ...]
    step: tuple[tuple[Factor, ...], ...]
    tail: tuple[tuple[Factor, ...], ...]
    direct: tuple[tuple[Factor, ...], ...]

    @property
    def initial(self) -> bool:
        return self.wrt == naming.step_name(self.state, 0)

    def count(self, t: int) -> int:
        """The number of terms of dJ_t/dw this formula stands for."""
        s = len(self.step)
        if self.initial:
            return len(self.head) * s**t
        repeats = t if s == 1 else (s**t - 1) // (s - 1)  # sum over k of s^(t-k)
        return len(self.direct) + len(self.head) * len(self.tail) * repeats

    def total(self, steps: int) -> int:
        """The number of terms of dJ/dw = sum_t dJ_t/dw (dJ_T/dw for a many-to-one cell)."""
        if self.last:
            return self.count(steps)
        s, h = len(self.step), len(self.head)
        if self.initial:
            return h * (steps if s == 1 else s * (s**steps - 1) // (s - 1))
        if s == 1:
            repeats = steps * (steps + 1) // 2
        else:
            repeats = sum((s**t - 1) // (s - 1) for t in range(1, steps + 1))
        return len(self.direct) * steps + h * len(self.tail) * repeats


def move_paths(paths: tuple[tuple[Factor, ...], ...], step: int | str, var: str = "t") -> list[tuple[Factor, ...]]:
    """Paths written relative to ``var`` moved to ``step`` (see ``naming.move``)."""
    return [tuple(Factor(naming.move(f.num, step, var), naming.move(f.den, step, var)) for f in p) for p in paths]


def instances(f: Factorized, t: int) -> list[tuple[Factor, ...]]:
    """Every term of dJ_t/dw that the factorized formula stands for, shortest first."""
    out = list(move_paths(f.direct, t))
    ks = [0] if f.initial else range(t, 0, -1)
    for k in ks:
        prefixes = move_paths(f.head, t)
        for j in range(t, k, -1):
            prefixes = [p + s for p in prefixes for s in move_paths(f.step, j, "j")]
        tails = [()] if f.initial else move_paths(f.tail, k, "k")
        out += [p + tail for p in prefixes for tail in tails]
    return sorted(out, key=len)


def _within_step(cell: Cell, top: str, stop: str, avoid: str | None = None) -> tuple[tuple[Factor, ...], ...]:
    """Paths from ``top`` down to ``stop`` among step t's own nodes (symbols at @t)."""
    deps = {naming.step_name(eq.name, "t"): tuple(s.name for s in symbols_in(eq.rhs)) for eq in cell.equations}
    found: list[tuple[Factor, ...]] = []

    def walk(node: str, prefix: tuple[Factor, ...]) -> None:
        for arg in deps.get(node, ()):
            if arg == avoid:
                continue
            step = prefix + (Factor(node, arg),)
            if arg == stop:
                found.append(step)
            elif arg in deps:
                walk(arg, step)

    walk(top, ())
    return tuple(sorted(found, key=len))


def factorize(cell: Cell, wrt: str) -> Factorized:
    """The time-factorized chain rule for ``wrt`` (a parameter, or the initial state s@0)."""
    if len(cell.states) != 1:
        raise NotImplementedError("the time-factorized expansion is written for cells with one state")
    state = cell.states[0].name
    last = cell.loss_mode == "last"
    loss, s_t, s_prev = (naming.step_name(n, r) for n, r in ((cell.loss, "t"), (state, "t"), (state, "t-1")))
    head = _within_step(cell, loss, s_t)
    step = tuple(move_paths(_within_step(cell, s_t, s_prev), "j"))
    if wrt == naming.step_name(state, 0):
        return Factorized(wrt, state, last, head, step, (), ())
    tail = tuple(move_paths(_within_step(cell, s_t, wrt), "k"))
    direct = _within_step(cell, loss, wrt, avoid=s_t)
    return Factorized(wrt, state, last, head, step, tail, direct)
