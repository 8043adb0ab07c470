"""``bptt check``: the derivation's gradients, right and with one thing done wrong.

A gradient of the user's that does not match is compared with what the derivation gives when one
thing is done wrong, each computed from the derivation's own parts, not guessed.  Each suspect
has its builder below, and ``SUSPECTS`` lists them in the order a diagnosis tries them (the
sharper first, where a cell has several states or activations):

- one state's carry left out (dc_next missing, dh_next kept), then every carry: only the k = t terms;
- the sums truncated to K steps (k > t - K);
- one activation's derivative left out (tanh'(c_t) alone), then every activation's;
- a gradient's outer product taken with the vector of the wrong step (h_t for h_{t-1});
- the outer product transposed or its factors swapped; the sign flipped;
- the mean over time instead of the sum;
- the first step's outer product taken with h_T, the last state (an array indexed h[t-1] at t = 1).

The last is computed by replaying the derivation's program numerically (``replay``: the cell's
equations forward, the program's deltas backward, by the evaluator) and re-evaluating the first
step's outer products.  (A clipped or scaled gradient, or a suspect times a constant factor, is
recognised in ``report.diagnose``.)
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from derive.derivation.adjoint import Program, build_program, without_carry
from derive.derivation.pipeline import Derivation
from derive.derivation.rules import RULES
from derive.derivation.unroll import relabel
from derive.emit.outputs import module_source
from derive.emit.printing import text
from derive.ir import naming
from derive.ir.cell import Cell, Equation
from derive.ir.exprs import Elementwise
from derive.tools.check.problem import Grads, Problem, derived_answer, step_values
from derive.verify.evaluator import Evaluator
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

    def program_grads(self, program: Program, tag: str) -> Grads:
        """The gradients of a changed program for this case's problem."""
        return self.grads(dataclasses.replace(self.derivation, program=program), tag)


def _truncated(case: Case, k: int) -> Grads:
    return case.grads(dataclasses.replace(case.derivation, truncate=k), f"k{k}")


def carries(case: Case) -> list[Suspect]:
    """One state's carry left out, the others kept: for a cell with several states."""
    program = case.derivation.program
    if case.steps < 2 or len(program.carries) < 2:
        return []
    return [
        Suspect(
            f"carry:{c.state}",
            f"does not carry the gradient back through {c.state} "
            f"(the carried {naming.carried_local(c.state)} is missing)",
            f"the carried share of dJ/d{c.state}_t, {text(program.carried_into(c.state))}, "
            f'in "The efficient recurrence" of {case.doc}',
            case.program_grads(without_carry(program, c.state), f"carry_{c.state}"),
        )
        for c in program.carries
    ]


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


def _applications(cell: Cell) -> list[tuple[Equation, Elementwise]]:
    """Each application of an elementwise function with a derivative, with the equation it is in."""
    return [
        (eq, e)
        for eq in cell.equations
        for e in sp.preorder_traversal(eq.rhs)
        if isinstance(e, Elementwise) and e.op.slope is not None
    ]


def _activations(cell: Cell) -> list[str]:
    """The elementwise functions with a derivative that the cell's equations apply, by name."""
    return sorted({e.op.name for _, e in _applications(cell)})


def _slope(eq: Equation, application: Elementwise) -> sp.Basic:
    """f'(a) as the rule table writes it: from the node's value where f(a) is the whole equation."""
    out = sp.MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape) if application == eq.rhs else application
    slope = application.op.slope
    assert slope is not None  # _applications keeps only these
    return slope(application.arg, out)


def _slope_name(application: Elementwise) -> str:
    """tanh'(c_t) for f of a named vector; tanh' where the argument is a sum."""
    arg = application.arg
    return f"{application.op.name}'({text(arg)})" if isinstance(arg, sp.MatrixSymbol) else f"{application.op.name}'"


def slopes(case: Case) -> list[Suspect]:
    """One activation's derivative left out, the others kept: for a cell that applies several."""
    cell = case.derivation.cell
    applications = _applications(cell)
    if len(applications) < 2:
        return []
    out = []
    for n, (eq, application) in enumerate(applications):
        name, slope = _slope_name(application), text(_slope(eq, application))
        program = build_program(cell, RULES.without_slopes(application))
        out.append(
            Suspect(
                f"slope:{eq.name}:{name}",
                f"leaves {name} out of {eq.name} = {text(eq.rhs)} (the factor {slope}); "
                "keeps the other activations' derivatives",
                f'the factor diag({slope}) in "The local derivatives" of {case.doc}',
                case.program_grads(program, f"slope{n}"),
            )
        )
    return out


def activation(case: Case) -> list[Suspect]:
    """The activations' derivatives left out of the local Jacobians."""
    program = build_program(case.derivation.cell, RULES.without_slopes())
    slopes = ", ".join(f"{name}'" for name in _activations(case.derivation.cell))
    return [
        Suspect(
            "activation",
            f"leaves an activation's derivative out ({slopes}: uses dJ/dh where dJ/da = diag(f'(a)) dJ/dh belongs)",
            f"the activations' factors (diag(f'(a_t)): {slopes}) in \"The local derivatives\" of {case.doc}",
            case.program_grads(program, "noact"),
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


# ---- the first step: the initial state ignored, or read from the wrong row ---------------


def _initial(cell: Cell, states: list[str], step: int | str = 0) -> str:
    """h_0, or h_0, c_0: the states' values at ``step``, as the text printer writes them."""
    return ", ".join(text(cell.nodes[s].at(step)) for s in states)


def _evaluator(cell: Cell, problem: Problem) -> Evaluator:
    return Evaluator(cell.sizes(problem.params))


# replay :: (Cell, Program, Problem) -> [the values of step t by step-relative name, t = 1..T]
def replay(cell: Cell, program: Program, problem: Problem) -> list[dict[str, np.ndarray]]:
    """Every value of each step, by the names the program reads (``h@t``, ``h@t-1``, ``dJ/dz@t``): the
    cell's equations forward, then the program's deltas backward, by the evaluator, on (n, 1) columns."""
    evaluate = _evaluator(cell, problem)
    envs = step_values(cell, problem, loss=True)
    carried: dict[str, np.ndarray] = {}
    for env in reversed(envs):
        for a in program.assigns:
            value = evaluate(a.expr, env)
            env[a.target.name] = value + carried[a.node] if a.carried is not None and a.node in carried else value
        carried = {c.state: evaluate(c.expr, env) for c in program.carries}
    return envs


def _outer_states(program: Program) -> list[str]:
    """The states whose previous value is an outer product's right factor (h in dJ/dW_hh = delta h_{t-1}^T)."""
    found = {
        naming.split(tr.arg.name)[0]
        for acc in program.accumulates
        for tr in acc.expr.atoms(sp.Transpose)
        if isinstance(tr.arg, sp.MatrixSymbol) and naming.split(tr.arg.name)[1] == "t-1"
    }
    return [s.name for s in program.cell.states if s.name in found]


def _first_step_read_last(case: Case, problem: Problem, right: Grads, states: list[str]) -> Grads:
    """``right`` (of ``problem``) with each gradient's step-1 outer product taken with s_T, not s_0:
    the program's gradient terms at t = 1, replayed, re-evaluated with the last state, one sequence
    at a time (the program's Jacobians are of one column)."""
    grads = dict(right)
    for b in range(problem.batch):
        one = dataclasses.replace(
            problem,
            xs=problem.xs[:, b : b + 1],
            targets=problem.targets[:, b : b + 1],
            initial=[v[b : b + 1] for v in problem.initial],
        )
        for wrt, change in _first_step_change(case, one, states).items():
            grads[wrt] = grads[wrt] + change.reshape(right[wrt].shape)
    return grads


def _first_step_change(case: Case, problem: Problem, states: list[str]) -> Grads:
    """What reading s_T for s_0 at t = 1 adds to each gradient, for a problem of one sequence."""
    cell, program = case.derivation.cell, case.derivation.program
    envs = replay(cell, program, problem)
    first, last = envs[0], envs[-1]
    evaluate = _evaluator(cell, problem)
    swap, env = {}, dict(first)
    for s in states:
        prev, final = cell.nodes[s].at("t-1"), cell.nodes[s].at("T")
        swap[sp.Transpose(prev)] = sp.Transpose(final)
        env[final.name] = last[naming.step_name(s, "t")]
    out = {}
    for acc in program.accumulates:
        wrong = acc.expr.xreplace(swap)
        if wrong != acc.expr:
            out[acc.wrt] = evaluate(wrong, env) - evaluate(acc.expr, first)
    return out


def first_step(case: Case) -> list[Suspect]:
    """The outer products at t = 1 taken with the last state where the initial one belongs (an array
    indexed h[t-1] reads h[-1] at t = 1).  (Code that also ignores the initial state is checked from
    zero: a convention the check finds, ``targets.LossTarget``.)"""
    cell = case.derivation.cell
    states = _outer_states(case.derivation.program)
    if not states:
        return []
    first, last = _initial(cell, states), _initial(cell, states, "T")
    array = " and ".join(f"{s}[t-1]" for s in states)
    read = " and ".join(f"{s}[-1]" for s in states)
    where = f'the last factor of the k = 1 terms, (.) {first}^T, in "The gradients" of {case.doc}'
    return [
        Suspect(
            "first_step",
            f"is wrong only at the first step: the outer product at t = 1 uses {last}, the last state, "
            f"where {first} belongs (an array indexed {array} reads {read} at t = 1)",
            where,
            _first_step_read_last(case, case.problem, case.right, states),
        ),
    ]


SUSPECTS: tuple[Callable[[Case], list[Suspect]], ...] = (
    carries,
    recurrence,
    truncations,
    slopes,
    activation,
    wrong_step,
    transposed,
    sign,
    mean,
    first_step,
)


def suspects(derivation: Derivation, problem: Problem, steps: int, right: Grads) -> list[Suspect]:
    """The derivation's gradients with one thing done wrong, for ``problem`` (of ``steps`` steps),
    whose right gradients are ``right``."""
    case = Case(derivation, problem, steps, right)
    return [suspect for build in SUSPECTS for suspect in build(case)]
