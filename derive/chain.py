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
from .unroll import Unrolled


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
    """dJ/dw = sum_t dJ_t/dw, each dJ_t/dw a sum of terms; ``per_loss[t - 1]`` holds J_t's."""

    wrt: str
    per_loss: tuple[tuple[Term, ...], ...]

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(term for terms in self.per_loss for term in terms)

    def count(self) -> int:
        return sum(len(terms) for terms in self.per_loss)


def paths(unrolled: Unrolled, top: str, wrt: str) -> list[tuple[Factor, ...]]:
    """Every path from node ``top`` to symbol ``wrt``, shortest first."""
    found: list[tuple[Factor, ...]] = []

    def walk(node: str, prefix: tuple[Factor, ...]) -> None:
        for arg in unrolled.deps.get(node, ()):
            step = prefix + (Factor(node, arg),)
            if arg == wrt:
                found.append(step)
            elif arg in unrolled.deps:
                walk(arg, step)

    walk(top, ())
    return sorted(found, key=len)


def expand(unrolled: Unrolled, wrt: str) -> Expansion:
    """The chain-rule expansion of dJ/d``wrt`` over all T losses."""
    per_loss = tuple(
        tuple(Term(t, factors) for factors in paths(unrolled, loss.name, wrt))
        for t, loss in enumerate(unrolled.losses, start=1)
    )
    return Expansion(wrt, per_loss)


def differentiable(unrolled: Unrolled) -> tuple[str, ...]:
    """What the gradient is taken with respect to: the parameters, then the initial states."""
    return unrolled.cell.param_names + tuple(s.name for s in unrolled.initial_states)


def expand_all(unrolled: Unrolled) -> dict[str, Expansion]:
    return {wrt: expand(unrolled, wrt) for wrt in differentiable(unrolled)}
