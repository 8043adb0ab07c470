"""``bptt check``, step three: the derivation's gradients, right and with one thing done wrong.

A gradient of the user's that does not match is compared with what the derivation gives when one
thing is done wrong, each computed from the derivation's own parts, not guessed.  Each suspect
has its builder below, and ``SUSPECTS`` lists them in the order a diagnosis tries them:

- the recurrent terms left out (only the k = t terms: BPTT truncated to one step);
- the sums truncated to K steps (k > t - K);
- an activation's derivative left out of the local Jacobians;
- a gradient's outer product taken with the vector of the wrong step (h_t for h_{t-1});
- the outer product transposed or its factors swapped; the sign flipped;
- the mean over time instead of the sum.

(A clipped or scaled gradient is recognised from the right gradient alone, in ``report.diagnose``.)
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from derive.derivation.adjoint import build_program
from derive.derivation.pipeline import Derivation
from derive.derivation.rules import RULES
from derive.derivation.unroll import relabel
from derive.emit.outputs import module_source
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import Elementwise
from derive.tools.check.problem import Grads, Problem, derived_answer
from derive.verify.report import load_module


def derived_module(derivation: Derivation, tag: str) -> types.ModuleType:
    """The generated module of ``derivation``, imported under a name tagged ``tag``."""
    return load_module(module_source(derivation), f"check_{tag}")


def derived_grads(module: types.ModuleType, problem: Problem, cell: Cell) -> tuple[float, Grads]:
    """A generated module's loss and gradients (of the cell's parameters) for ``problem``."""
    loss, grads = derived_answer(module, problem, cell)
    return loss, {k: v for k, v in grads.items() if k in cell.param_names}


@dataclass
class Suspect:
    """One way of getting the gradients wrong: its gradients, and what to say."""

    key: str
    says: str  # what the user's code does
    term: str  # the part of the derivation it misses, and where the document writes it
    grads: Grads


@dataclass(frozen=True)
class Case:
    """What every suspect builder is given: ``problem`` (of ``steps`` steps), whose right gradients
    are ``right``, and the derivation they come from."""

    derivation: Derivation
    problem: Problem
    steps: int
    right: Grads

    @property
    def doc(self) -> str:
        """The document that writes the derivation out: where each suspect's missing term is."""
        return f"{naming.file_stem(self.derivation.cell.name, self.steps, None)}.tex"

    def grads(self, derivation: Derivation, tag: str) -> Grads:
        """The gradients of a (changed) derivation for this case's problem."""
        return derived_grads(derived_module(derivation, tag), self.problem, self.derivation.cell)[1]


def _truncated(case: Case, k: int) -> Grads:
    return case.grads(dataclasses.replace(case.derivation, truncate=k), f"k{k}")


def recurrence(case: Case) -> list[Suspect]:
    """BPTT truncated to one step: the gradient not carried back through the state."""
    if case.steps < 2:
        return []
    return [
        Suspect(
            "recurrence",
            "keeps only the k = t terms: the gradient does not flow back through the state",
            f'the terms with k < t of each sum over k in "The chain-rule expansions" of {case.doc}, '
            'and the carried share in "The efficient recurrence"',
            _truncated(case, 1),
        )
    ]


def truncations(case: Case) -> list[Suspect]:
    """BPTT truncated to K = 2 .. steps - 1 steps."""
    return [
        Suspect(
            f"truncate{k}",
            f"truncates BPTT to {k} steps (keeps the terms with k > t - {k})",
            f'the terms with k <= t - {k} in "The chain-rule expansions" of {case.doc}',
            _truncated(case, k),
        )
        for k in range(2, case.steps)
    ]


def _activations(cell: Cell) -> list[str]:
    """The elementwise functions with a derivative that the cell's equations apply, by name."""
    nodes = [e for eq in cell.equations for e in sp.preorder_traversal(eq.rhs) if isinstance(e, Elementwise)]
    return sorted({e.op.name for e in nodes if e.op.slope is not None})


def activation(case: Case) -> list[Suspect]:
    """The activations' derivatives left out of the local Jacobians."""
    program = build_program(case.derivation.cell, RULES.without_slopes())
    grads = case.grads(dataclasses.replace(case.derivation, program=program), "noact")
    slopes = ", ".join(f"{name}'" for name in _activations(case.derivation.cell))
    return [
        Suspect(
            "activation",
            f"leaves an activation's derivative out ({slopes}: uses dJ/dh where dJ/da = diag(f'(a)) dJ/dh belongs)",
            f"the activations' factors (diag(f'(a_t)): {slopes}) in \"The local derivatives\" of {case.doc}",
            grads,
        )
    ]


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


def wrong_step(case: Case) -> list[Suspect]:
    """The outer products taken with the state of the next step."""
    return [
        Suspect(
            "step",
            "takes the outer product with the state of the wrong step (h_t where h_{t-1} belongs)",
            f'the last factor of each term, dz_k/dW = (.) h_{{k-1}}^T, in "The gradients" of {case.doc}',
            case.grads(_shifted_outer_products(case.derivation), "shift"),
        )
    ]


def transposed(case: Case) -> list[Suspect]:
    """Each gradient transposed: the factors of its outer product swapped."""
    return [
        Suspect(
            "transposed",
            "transposes the gradient (swaps the factors of its outer product: x delta^T for delta x^T)",
            f'the order of each outer product delta_k v^T in "The gradients" of {case.doc}',
            {k: g.T for k, g in case.right.items()},
        )
    ]


def sign(case: Case) -> list[Suspect]:
    """Each gradient with its sign flipped."""
    return [
        Suspect(
            "sign",
            "has the sign flipped",
            f'the sign of dJ/dp in "The local derivatives" of {case.doc}',
            {k: -g for k, g in case.right.items()},
        )
    ]


def mean(case: Case) -> list[Suspect]:
    """The gradients of the mean over the steps instead of the sum."""
    return [
        Suspect(
            "mean",
            f"takes the mean over the {case.steps} steps instead of the sum (J = sum_t J_t)",
            f'the sum over t in the loss, "The model" of {case.doc}',
            {k: g / case.steps for k, g in case.right.items()},
        )
    ]


SUSPECTS: tuple[Callable[[Case], list[Suspect]], ...] = (
    recurrence,
    truncations,
    activation,
    wrong_step,
    transposed,
    sign,
    mean,
)


def suspects(derivation: Derivation, problem: Problem, steps: int, right: Grads) -> list[Suspect]:
    """The derivation's gradients with one thing done wrong, for ``problem`` (of ``steps`` steps),
    whose right gradients are ``right``."""
    case = Case(derivation, problem, steps, right)
    return [suspect for build in SUSPECTS for suspect in build(case)]
