"""Stage 5: the efficient reverse-mode program (the delta recurrences), and its proof.

Reverse mode over one step of the cell, with the gradient of each state carried
back from step t+1 to step t.  For the seed model this is

    delta^y_t = p_t - l_t
    delta^h_t = W_hy^T delta^y_t + W_hh^T delta^z_{t+1}        (delta^z_{T+1} = 0)
    delta^z_t = (1 - h_t∘h_t) ⊙ delta^h_t
    dJ/dW_hh  = sum_t delta^z_t h_{t-1}^T,   dJ/dh_0 = W_hh^T delta^z_1

where delta^n_t = dJ/dn_t (J the total loss).  Every step uses the rule table's
Jacobians, transposed: a vector-Jacobian product.  ``check_equivalence`` unrolls
the program for a chosen T and proves, by expanding both sides in SymPy, that
each delta^n_k equals sum_{t >= k} (dJ_t/dn_k)^T over the chain-rule terms, and
that each gradient equals the sum of its expanded terms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp
from sympy import MatrixSymbol, ZeroMatrix

from derive.derivation.analytic import row_product, term_gradient
from derive.derivation.chain import Expansion, paths
from derive.derivation.rules import RULES, Rules, collapsed_loss
from derive.derivation.unroll import Unrolled, at_step, relabel
from derive.ir import naming
from derive.ir.cell import Cell, refusals_at
from derive.ir.exprs import (
    Softmax,
    add,
    contract,
    is_scalar,
    mul,
    outer_terms,
    transpose,
    valued,
)
from derive.ir.ops import Sigmoid


def adjoint_symbol(name: str, shape: tuple[sp.Expr, sp.Expr]) -> MatrixSymbol:
    return MatrixSymbol(naming.grad_name(name), *shape)


@dataclass(frozen=True)
class Assign:
    """delta^n_t = expr (+ the gradient of state n carried back from step t+1)."""

    target: MatrixSymbol
    expr: sp.Basic
    node: str
    carried: MatrixSymbol | None = None  # delta^n_{t}'s share from step t+1, see Carry
    # expr = direct + through: J_t's own share (the loss reads n_t), and what comes through step t's
    # other deltas; truncated BPTT's run for J_s keeps ``direct`` at step s only
    direct: sp.Basic | None = None
    through: sp.Basic | None = None


@dataclass(frozen=True)
class Carry:
    """The share of the gradient of state s_{t-1} that flows through step t's nodes."""

    state: str
    expr: sp.Basic  # in terms of step t's deltas


@dataclass(frozen=True)
class Accumulate:
    """dJ/dw += expr, once per step."""

    wrt: str
    expr: sp.Basic
    direct: sp.Basic | None = None  # the loss's own share (J_t reads w): see Assign
    through: sp.Basic | None = None


@dataclass(frozen=True)
class Program:
    """One backward step at symbolic t, in execution order."""

    cell: Cell
    assigns: tuple[Assign, ...]
    accumulates: tuple[Accumulate, ...]
    carries: tuple[Carry, ...]

    def carried_into(self, state: str) -> sp.Basic:
        """The carried share of delta^s_t, written at step t + 1 (for the LaTeX)."""
        carry = next(c for c in self.carries if c.state == state)
        return relabel(carry.expr, "t+1")


def _fused_softmax(cell: Cell) -> dict[str, str]:
    """{y: p} for each p = softmax(y) of a named node y whose only consumer is the cross-entropy
    loss (or p = sigmoid(y) and the binary cross-entropy): not a state (the next step reads a state
    too), not softmax(V h) (no node to carry p - l)."""
    loss = cell.equation(cell.loss).rhs
    states = {s.name for s in cell.states}
    fused = {}
    for eq in cell.equations:
        if not isinstance(eq.rhs, (Softmax, Sigmoid)) or not isinstance(eq.rhs.arg, MatrixSymbol) or eq.name in states:
            continue
        p = MatrixSymbol(naming.step_name(eq.name, "t"), *eq.shape)
        users = [e.name for e in cell.equations if e.rhs.has(p)]
        if users == [cell.loss] and collapsed_loss(loss, eq.rhs, p) is not None:
            fused[naming.split(eq.rhs.arg.name)[0]] = eq.name
    return fused


def build_program(cell: Cell, rules: Rules = RULES) -> Program:
    """Reverse mode over the cell's equations at symbolic step t, by the rule table ``rules``."""
    jacobian = rules.jacobian
    eqs = {eq.name: eq for eq in cell.equations}
    here = {name: MatrixSymbol(naming.step_name(name, "t"), *eq.shape) for name, eq in eqs.items()}
    delta = {name: adjoint_symbol(here[name].name, eq.shape) for name, eq in eqs.items()}
    fused = _fused_softmax(cell)
    skipped = set(fused.values()) | {cell.loss}
    state_names = {s.name for s in cell.states}

    assigns = []
    for name in reversed([eq.name for eq in cell.equations]):
        if name in skipped:
            continue
        zero = ZeroMatrix(*eqs[name].shape)
        own: list[sp.Basic] = []  # the loss's own share of the delta (J_t reads n_t)
        through: list[sp.Basic] = []  # the shares through step t's other deltas
        parts: list[sp.Basic] = []  # both, in the order the cell's equations read n_t
        if name in fused:  # J_t's share through p = softmax(y), collapsed; y may feed other nodes too
            p = eqs[fused[name]]
            own = [transpose(collapsed_loss(eqs[cell.loss].rhs, p.rhs, here[p.name]))]
            parts = own.copy()
        for user in cell.equations:
            if user.name in skipped and user.name != cell.loss or not user.rhs.has(here[name]):
                continue
            with refusals_at(cell, user.name):
                jac = jacobian(user.rhs, here[name], here[user.name])
            part = transpose(jac) if user.name == cell.loss else mul(transpose(jac), delta[user.name])
            (own if user.name == cell.loss else through).append(part)
            parts.append(part)
        expr = add(*parts) if parts else zero
        direct = add(*own) if own else None
        carried = None
        if name in state_names:
            carried = adjoint_symbol(naming.step_name(name, "t+1") + "~", eqs[name].shape)
        assigns.append(Assign(delta[name], expr, name, carried, direct, add(*through) if through else zero))

    computed = [a.node for a in assigns]
    accumulates = []
    for wrt in cell.param_names:
        own, through, parts = [], [], []
        psym = cell.param(wrt).symbol
        for name in computed + ([cell.loss] if cell.loss not in fused.values() else []):
            if eqs[name].rhs.has(psym):
                with refusals_at(cell, name):
                    jac = jacobian(eqs[name].rhs, psym, here[name])
                g = sp.Identity(1) if name == cell.loss else delta[name]  # dJ/dJ_t = 1
                part = contract(jac, g) if outer_terms(jac) else mul(transpose(jac), g)
                (own if name == cell.loss else through).append(part)
                parts.append(part)
        if parts:
            zero = ZeroMatrix(*psym.shape)
            accumulates.append(
                Accumulate(wrt, add(*parts), add(*own) if own else None, add(*through) if through else zero)
            )

    carries = []
    for state in cell.states:
        prev = MatrixSymbol(naming.step_name(state.name, "t-1"), *state.at("t").shape)
        parts = []
        for n in computed:
            if eqs[n].rhs.has(prev):
                with refusals_at(cell, n):
                    parts.append(mul(transpose(jacobian(eqs[n].rhs, prev, here[n])), delta[n]))
        carries.append(Carry(state.name, add(*parts)))
    return Program(cell, tuple(assigns), tuple(accumulates), tuple(carries))


def without_carry(program: Program, state: str) -> Program:
    """The program with delta^s_t's carried share left out: what step t + 1 passes back to state s
    is dropped, the other states' carries kept (a mistake, on purpose, for ``bptt check``)."""
    if state not in {c.state for c in program.carries}:
        raise ValueError(f"{state} is not a state of {program.cell.name}")
    assigns = tuple(replace(a, carried=None) if a.node == state else a for a in program.assigns)
    return replace(program, assigns=assigns)


def with_carry(program: Program, assign: Assign) -> sp.Basic:
    """delta^n_t in full, the carried share written at step t+1."""
    if assign.carried is None:
        return assign.expr
    return sp.MatAdd(assign.expr, program.carried_into(assign.node), evaluate=False)


# ---- the proof for a chosen T ---------------------------------------------------------


# run_backward :: (Program, top, bottom, s) -> (delta^n_k by name, dJ/dw by wrt, s_{bottom-1}'s share by state)
def run_backward(
    program: Program, top: int, bottom: int = 1, loss_step: int | None = None, grads: dict[str, sp.Basic] | None = None
) -> tuple[dict[str, sp.Basic], dict[str, sp.Basic], dict[str, sp.Basic]]:
    """Run the program symbolically for k = top, ..., bottom, nothing carried in from step top + 1,
    each gradient's terms added to ``grads`` (a copy).  With ``loss_step`` s the run carries J_s
    alone (truncated BPTT's run for J_s, or a many-to-one cell's J_T): below step s the outputs
    have no delta, and no delta or gradient keeps J_k's own share (the ``through`` part alone)."""
    cell = program.cell
    values: dict[str, sp.Basic] = {}
    grads = dict(grads or {})
    carried: dict[str, sp.Basic] = {}
    for k in range(top, bottom - 1, -1):
        below = loss_step is not None and k < loss_step
        for a in program.assigns:
            name = naming.grad_name(naming.step_name(a.node, k))
            if below and a.node in cell.outputs:  # J_s reads the outputs of step s only
                values[name] = ZeroMatrix(*a.target.shape)
                continue
            own = a.through if below and a.through is not None else a.expr
            expr = _substitute(at_step(own, k), values)
            if a.carried is not None and a.node in carried:
                expr = add(expr, carried[a.node])
            values[name] = expr
        for acc in program.accumulates:
            own = acc.through if below and acc.through is not None else acc.expr
            term = _substitute(at_step(own, k), values)
            grads[acc.wrt] = add(grads[acc.wrt], term) if acc.wrt in grads else term
        for c in program.carries:
            carried[c.state] = _substitute(at_step(c.expr, k), values)
    return values, grads, carried


def unrolled_deltas(program: Program, steps: int) -> tuple[dict[str, sp.Basic], dict[str, sp.Basic]]:
    """Run the program symbolically for t = T..1: (delta^n_k by name, gradient by wrt)."""
    last = program.cell.loss_mode == "last"  # many-to-one: the outputs exist at step T only
    values, grads, carried = run_backward(program, steps, 1, steps if last else None)
    for c in program.carries:
        grads[naming.step_name(c.state, 0)] = carried[c.state]
    return values, grads


def truncated_gradients(program: Program, steps: int, truncate: int) -> dict[str, sp.Basic]:
    """Run truncated BPTT symbolically: for each loss J_s, the program from step s down to
    max(1, s - K + 1) with the outputs' deltas zero below step s and nothing carried in from
    step s + 1; J_s's share of an initial state's gradient only where the run reaches step 1."""
    grads: dict[str, sp.Basic] = {}
    for s in program.cell.loss_steps(steps):
        lowest = max(1, s - truncate + 1)
        _, grads, carried = run_backward(program, s, lowest, s, grads)
        if lowest == 1:
            for c in program.carries:
                wrt = naming.step_name(c.state, 0)
                grads[wrt] = add(grads[wrt], carried[c.state]) if wrt in grads else carried[c.state]
    return grads


def _substitute(expr: sp.Basic, values: dict[str, sp.Basic]) -> sp.Basic:
    mapping = {s: values[s.name] for s in expr.atoms(MatrixSymbol) if s.name in values}
    return expr.xreplace(mapping)


@dataclass(frozen=True)
class Equivalence:
    """What ``check_equivalence`` proved: one identity per delta and per gradient."""

    steps: int
    delta_identities: int
    nontrivial: int  # delta identities whose expanded side has two or more terms
    gradient_identities: int
    lemmas: tuple[str, ...]  # what else was proved on the way, for the document
    failures: tuple[str, ...]
    truncate: int | None = None  # the gradient identities are those of truncated BPTT to this many steps

    @property
    def holds(self) -> bool:
        return not self.failures


def noncommutative(expr: sp.Basic) -> sp.Expr:
    """A matrix expression as a polynomial in noncommuting symbols, transposes pushed to leaves.

    Matrices of consistent shapes form an associative algebra, so two matrix
    expressions that agree as noncommutative polynomials agree as matrices; SymPy
    expands such polynomials far faster than it expands matrix expressions.
    """
    if isinstance(expr, sp.Transpose) and not isinstance(expr.arg, MatrixSymbol):
        pushed = transpose(expr.arg)
        if pushed != expr:
            return noncommutative(pushed)
    if isinstance(expr, sp.MatMul):
        return sp.Mul(*[noncommutative(a) for a in expr.args])
    if isinstance(expr, sp.MatAdd):
        return sp.Add(*[noncommutative(a) for a in expr.args])
    if isinstance(expr, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(expr, sp.Identity):
        return sp.S.One
    if is_scalar(expr):
        return valued(expr)  # (rate - 1) / (1 - rate) cancels as numbers, not as constants' fractions
    return sp.Symbol(str(expr), commutative=False)


def _equal(a: sp.Basic, b: sp.Basic) -> bool:
    return sp.expand(noncommutative(a) - noncommutative(b)) == 0


def check_equivalence(
    program: Program, unrolled: Unrolled, expansions: dict[str, Expansion], truncate: int | None = None
) -> Equivalence:
    """Prove delta^n_k = sum_{t>=k} (dJ_t/dn_k)^T and dJ/dw = sum of its terms, for this T; with
    ``truncate``, that truncated BPTT's runs sum to the terms truncation keeps."""
    values, grads = unrolled_deltas(program, unrolled.steps)
    if truncate is not None:
        grads = truncated_gradients(program, unrolled.steps, truncate)
        expansions = {wrt: e.truncated(truncate) for wrt, e in expansions.items()}
    failures = []
    n_delta = nontrivial = 0
    for name, value in values.items():
        node = name[len(naming.GRAD) :]
        if node not in unrolled.deps:  # an output before the last step of a many-to-one cell: not a node
            continue
        expanded = [
            transpose(row_product(unrolled, factors))
            for loss in unrolled.losses
            for factors in paths(unrolled, loss.name, node)
        ]
        n_delta += 1
        nontrivial += len(expanded) >= 2
        if not _equal(value, add(*expanded) if expanded else ZeroMatrix(*value.shape)):
            failures.append(f"delta of {node}")
    for wrt, expansion in expansions.items():
        terms = [term_gradient(unrolled, term) for term in expansion.terms]
        got = grads.get(wrt)
        if got is None:  # truncation dropped every term (an initial state, T > K)
            ok = not terms
        else:
            ok = _equal(got, add(*terms) if terms else ZeroMatrix(*got.shape))
        if not ok:
            failures.append(f"gradient of {wrt}")
    lemmas = []
    if _fused_softmax(program.cell):
        if prove_softmax_collapse():
            lemmas.append("softmax_collapse")
        else:
            failures.append("the softmax + cross-entropy collapse")
    return Equivalence(unrolled.steps, n_delta, nontrivial, len(expansions), tuple(lemmas), tuple(failures), truncate)


COLLAPSE_SIZE = 4


def prove_softmax_collapse(size: int = COLLAPSE_SIZE) -> bool:
    """d(-log softmax(y)[c])/dy = p - e_c, by SymPy's own diff, for every class c of a size-n vector.

    The rule table's product -l^T diag(p)^{-1} (diag(p) - p p^T) = (p - l)^T uses the fact
    that a one-hot l sums to one; this checks the collapse independently of that table.
    """
    y = sp.symbols(f"y0:{size}")
    exps = [sp.exp(v) for v in y]
    p = [e / sum(exps) for e in exps]
    for c in range(size):
        loss = -sp.log(p[c])
        for i, v in enumerate(y):
            expected = p[i] - (1 if i == c else 0)
            if sp.simplify(sp.diff(loss, v) - expected) != 0:
                return False
    return True
