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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from derive.derivation.unroll import Unrolled, symbols_in
from derive.ir import naming
from derive.ir.cell import Cell


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

    def truncated(self, truncate: int | None) -> Expansion:
        """Only the terms truncated BPTT keeps (see ``kept``)."""
        if truncate is None:
            return self
        return Expansion(self.wrt, tuple(tuple(t for t in terms if kept(t, truncate)) for terms in self.per_loss))


def kept(term: Term, truncate: int | None) -> bool:
    """Truncated BPTT to K steps keeps the terms of dJ_t/dw where w enters at a step k > t - K
    (an initial state enters at step 1): the last K steps of each inner sum."""
    return truncate is None or max(term.entry_step, 1) > term.loss_step - truncate


def kept_steps(t: int, truncate: int | None) -> range:
    """The steps k = t, t-1, ... that the inner sum of dJ_t/dw keeps."""
    return range(t, 0 if truncate is None else max(0, t - truncate), -1)


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
    """What the gradient is taken with respect to: the parameters, then the initial states (``h@0``);
    a delay's initial value (h_{-1}, x_0) is zeros, not an argument, and has no gradient."""
    return cell.param_names + tuple(naming.step_name(s.name, 0) for s in cell.declared_states)


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

    def count(self, t: int, truncate: int | None = None) -> int:
        """The number of terms of dJ_t/dw this formula stands for (those truncated BPTT keeps)."""
        return as_blocks(self).count(t, truncate)

    def total(self, steps: int, truncate: int | None = None) -> int:
        """The number of terms of dJ/dw = sum_t dJ_t/dw (dJ_T/dw for a many-to-one cell)."""
        return as_blocks(self).total(steps, truncate)


def move_paths(paths: tuple[tuple[Factor, ...], ...], step: int | str, var: str = "t") -> list[tuple[Factor, ...]]:
    """Paths written relative to ``var`` moved to ``step`` (see ``naming.move``)."""
    return [tuple(Factor(naming.move(f.num, step, var), naming.move(f.den, step, var)) for f in p) for p in paths]


def instances(f: Factorized, t: int, truncate: int | None = None) -> list[tuple[Factor, ...]]:
    """Every term of dJ_t/dw that the factorized formula stands for, shortest first."""
    return block_instances(as_blocks(f), t, truncate)


def within_step(
    cell: Cell, top: str, stop: str, avoid: str | frozenset[str] | None = None
) -> tuple[tuple[Factor, ...], ...]:
    """Paths from ``top`` down to ``stop`` among step t's own nodes (symbols at @t), through none of ``avoid``."""
    deps = {naming.step_name(eq.name, "t"): tuple(s.name for s in symbols_in(eq.rhs)) for eq in cell.equations}
    avoided = frozenset([avoid]) if isinstance(avoid, str) else avoid or frozenset()
    found: list[tuple[Factor, ...]] = []

    def walk(node: str, prefix: tuple[Factor, ...]) -> None:  # depth: the nodes of one step
        for arg in deps.get(node, ()):
            if arg in avoided:
                continue
            step = prefix + (Factor(node, arg),)
            if arg == stop:
                found.append(step)
            elif arg in deps:
                walk(arg, step)

    walk(top, ())
    return tuple(sorted(found, key=len))


def factorize(cell: Cell, wrt: str) -> Factorized | Blocks:
    """The time-factorized chain rule for ``wrt`` (a parameter, or an initial state s@0)."""
    if len(cell.states) != 1:
        return factorize_blocks(cell, wrt)
    state = cell.states[0].name
    last = cell.loss_mode == "last"
    loss, s_t, s_prev = (naming.step_name(n, r) for n, r in ((cell.loss, "t"), (state, "t"), (state, "t-1")))
    head = within_step(cell, loss, s_t)
    step = tuple(move_paths(within_step(cell, s_t, s_prev), "j"))
    if wrt == naming.step_name(state, 0):
        return Factorized(wrt, state, last, head, step, (), ())
    tail = tuple(move_paths(within_step(cell, s_t, wrt), "k"))
    direct = within_step(cell, loss, wrt, avoid=s_t)
    return Factorized(wrt, state, last, head, step, tail, direct)


# ---- several states: the stacked state s_t = (h_t, c_t, ...) and its block Jacobian ------


Paths = tuple[tuple[Factor, ...], ...]


@dataclass(frozen=True)
class Blocks:
    """dJ_t/dw for any t, for a cell whose state is several vectors s_t = (a_t, b_t, ...):

        dJ_t/dw = sum(direct) + sum_{k=1}^{t} (dJ_t/ds_t) (ds_t/ds_{t-1}) ... (ds_{k+1}/ds_k) (ds_k/dw)

    The repeated factor ds_j/ds_{j-1} is a block matrix: ``step[a][b]`` holds the paths inside
    step j from state a (at j) to state b at j-1, through the step's other nodes (c_t on
    the way from h_t to c_{t-1}).  ``head[a]`` holds the paths from J_t to state a of step
    t that meet no other state of step t first (so that each path is counted once),
    ``tail[a]`` the paths inside step k from state a to w, and ``direct`` the paths from
    J_t to w that meet no state of step t.  For an initial state w = b@0 the only term
    is k = 0 and the tail picks block b.  Written at the symbolic steps t, j, k.
    """

    wrt: str
    states: tuple[str, ...]
    last: bool  # many-to-one: only J_T enters J
    head: tuple[Paths, ...]
    step: tuple[tuple[Paths, ...], ...]
    tail: tuple[Paths, ...]
    direct: Paths
    # counts weigh each path by this (default 1): the proof's cost weighs it by its monomials
    weight: Callable[[tuple[Factor, ...]], int] | None = field(default=None, compare=False, repr=False)

    def _n(self, paths: Paths) -> int:
        return len(paths) if self.weight is None else sum(self.weight(p) for p in paths)

    @property
    def initial(self) -> bool:
        return self.wrt in {naming.step_name(s, 0) for s in self.states}

    @property
    def initial_index(self) -> int:
        return [naming.step_name(s, 0) for s in self.states].index(self.wrt)

    def _rows(self, steps: int) -> list[list[int]]:
        """Path counts of head M^m for m = 0..steps, M the block counts of the step Jacobian."""
        size = len(self.states)
        counts = [[self._n(self.step[a][b]) for b in range(size)] for a in range(size)]
        row = [self._n(paths) for paths in self.head]
        out = [row]
        for _ in range(steps):
            row = [sum(row[a] * counts[a][b] for a in range(size)) for b in range(size)]
            out.append(row)
        return out

    def _losses(self, steps: int) -> range:
        return range(steps, steps + 1) if self.last else range(1, steps + 1)

    def _counts(self, steps: int, truncate: int | None) -> list[int]:
        """The path count of dJ_t/dw for t = 0..steps (index 0 unused)."""
        rows = self._rows(steps)
        if self.initial:
            return [rows[t][self.initial_index] if truncate is None or t <= truncate else 0 for t in range(steps + 1)]
        tails = [self._n(paths) for paths in self.tail]
        per_m = [sum(r * n for r, n in zip(rows[m], tails)) for m in range(steps)]  # the terms with t - k = m
        prefix = [0]
        for n in per_m:
            prefix.append(prefix[-1] + n)
        return [0] + [
            self._n(self.direct) + prefix[t if truncate is None else min(t, truncate)] for t in range(1, steps + 1)
        ]

    def count(self, t: int, truncate: int | None = None) -> int:
        """The number of paths of the unrolled graph from J_t to w: the terms dJ_t/dw stands for."""
        return self._counts(t, truncate)[t]

    def total(self, steps: int, truncate: int | None = None) -> int:
        """The number of paths from J (every J_t, or J_T for a many-to-one cell) to w."""
        counts = self._counts(steps, truncate)
        return sum(counts[t] for t in self._losses(steps))

    def block_count(self, t: int, truncate: int | None = None) -> int:
        """The number of terms written for dJ_t/dw: the direct paths and one block product per kept k."""
        if self.initial:
            return 1 if truncate is None or t <= truncate else 0
        return len(self.direct) + (len(kept_steps(t, truncate)) if any(self.tail) else 0)

    def block_total(self, steps: int, truncate: int | None = None) -> int:
        return sum(self.block_count(t, truncate) for t in self._losses(steps))


def as_blocks(f: Factorized | Blocks) -> Blocks:
    """A one-state factorization as a 1 x 1 block one (the same counts)."""
    if isinstance(f, Blocks):
        return f
    return Blocks(f.wrt, (f.state,), f.last, (f.head,), ((f.step,),), (f.tail,), f.direct)


def factorize_blocks(cell: Cell, wrt: str) -> Blocks:
    states = tuple(s.name for s in cell.states)
    now = {s: naming.step_name(s, "t") for s in states}
    loss = naming.step_name(cell.loss, "t")
    head = tuple(within_step(cell, loss, now[a], avoid=frozenset(now.values()) - {now[a]}) for a in states)
    step = tuple(
        tuple(tuple(move_paths(within_step(cell, now[a], naming.step_name(b, "t-1")), "j")) for b in states)
        for a in states
    )
    last = cell.loss_mode == "last"
    if wrt in {naming.step_name(s, 0) for s in states}:
        return Blocks(wrt, states, last, head, step, tuple(() for _ in states), ())
    tail = tuple(tuple(move_paths(within_step(cell, now[a], wrt), "k")) for a in states)
    direct = within_step(cell, loss, wrt, avoid=frozenset(now.values()))
    return Blocks(wrt, states, last, head, step, tail, direct)


def block_instances(f: Blocks, t: int, truncate: int | None = None) -> list[tuple[Factor, ...]]:
    """Every path of the unrolled graph from J_t to w that the block formula stands for, shortest first."""
    out = list(move_paths(f.direct, t))
    ks = ([0] if truncate is None or t <= truncate else []) if f.initial else kept_steps(t, truncate)
    for k in ks:
        prefixes = [(a, p) for a, paths in enumerate(f.head) for p in move_paths(paths, t)]
        for j in range(t, k, -1):
            prefixes = [
                (b, p + s) for a, p in prefixes for b in range(len(f.states)) for s in move_paths(f.step[a][b], j, "j")
            ]
        if f.initial:
            out += [p for a, p in prefixes if a == f.initial_index]
        else:
            out += [p + tail for a, p in prefixes for tail in move_paths(f.tail[a], k, "k")]
    return sorted(out, key=len)


def stacked_name(cell: Cell) -> str:
    """The name of the stacked state (h_t, c_t, ...) in block factors: s, unless the cell uses s."""
    used = {eq.name for eq in cell.equations} | {v.name for v in cell.inputs + cell.targets + cell.states}
    used |= set(cell.param_names)
    return next(n for n in ("s", "S", "state", "stacked") if n not in used)


def block_expansion(cell: Cell, steps: int, f: Blocks, truncate: int | None = None) -> Expansion:
    """dJ/dw term by term at the state level: the direct paths, then for each k the product
    (dJ_t/ds_t)(ds_t/ds_{t-1}) ... (ds_{k+1}/ds_k)(ds_k/dw) as one term of block factors."""
    s = stacked_name(cell)
    per_loss = []
    for t in cell.loss_steps(steps):
        terms = [Term(t, path) for path in move_paths(f.direct, t)]
        if f.initial:
            ks: Iterable[int] = [0] if truncate is None or t <= truncate else []
        else:
            ks = kept_steps(t, truncate) if any(f.tail) else []
        for k in ks:
            factors = [Factor(naming.step_name(cell.loss, t), naming.step_name(s, t))]
            factors += [Factor(naming.step_name(s, j), naming.step_name(s, j - 1)) for j in range(t, k, -1)]
            factors.append(Factor(naming.step_name(s, k), f.wrt))
            terms.append(Term(t, tuple(factors)))
        per_loss.append(tuple(terms))
    return Expansion(f.wrt, tuple(per_loss))
