"""The derivation's formulas as the document writes them: the chain-rule sums for any T and term by term
(the table of local derivatives is ``jacobians``), the softmax collapse, the recurrence, and for several
states the block Jacobian."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.derivation.adjoint import COLLAPSE_SIZE, with_carry
from derive.derivation.analytic import factor_matrix, row_product, term_gradient
from derive.derivation.chain import Blocks, Factor, Factorized, Term, move_paths, stacked_name
from derive.derivation.pipeline import Derivation
from derive.derivation.rules import jacobian, softmax_cross_entropy
from derive.derivation.unroll import StepGraph, at_step, symbols_in
from derive.emit.document.layout import (
    CONTINUE,
    LINE_WIDTH,
    chunks,
    display,
    fill,
    flat_sum,
    signed_terms,
    step_symbol,
)
from derive.emit.printing import LatexPrinter, latex, latex_width
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import add, mul, outer_terms, transpose

PARTIALS_PER_LINE = 10


LEMMAS = {
    "softmax_collapse": "SymPy also differentiated $-\\log \\operatorname{softmax}(y)_c$ for a vector of "
    f"{COLLAPSE_SIZE} logits and every class $c$, and found $p - e_c$: the collapse of the softmax and the "
    "cross-entropy above, checked without the rule table.",
}


@dataclass(frozen=True)
class Group:
    """The terms of dJ_t/dw as align* rows: ``lhs`` then one or more lines per term."""

    lhs: str
    terms: tuple[tuple[str, ...], ...]


Formula = dict[str, list[str] | None]  # display lines by kind: "factors" (partials), "analytic"


def _partial_wrt(loss: str, wrt: str) -> str:
    return LatexPrinter().partial(Factor(loss, wrt))


def expansion_groups(derivation: Derivation, wrt: str) -> tuple[Group, ...]:
    printer = LatexPrinter()
    groups = []
    for loss_terms in reversed(derivation.expansions[wrt].per_loss):
        t = loss_terms[0].loss_step if loss_terms else 0
        terms = tuple(chunks([printer.partial(f) for f in term.factors], PARTIALS_PER_LINE) for term in loss_terms)
        if terms:
            groups.append(Group(_partial_wrt(naming.step_name(derivation.cell.loss, t), wrt), terms))
    return tuple(groups)


def analytic_groups(derivation: Derivation, wrt: str) -> tuple[Group, ...]:
    printer = LatexPrinter()
    groups = []
    for loss_terms in reversed(derivation.expansions[wrt].per_loss):
        t = loss_terms[0].loss_step if loss_terms else 0
        terms = []
        for term in loss_terms:
            assert derivation.unrolled is not None, "analytic terms are written for expanded derivations"
            terms.append(_term_lines(printer, term_gradient(derivation.unrolled, term)))
        if terms:
            groups.append(Group(_partial_wrt(naming.step_name(derivation.cell.loss, t), wrt), tuple(terms)))
    return tuple(groups)


def _term_lines(printer: LatexPrinter, gradient: sp.Basic) -> tuple[str, ...]:
    """One term's display lines: its factors filled into lines; a wide sum (a weight in several
    places of one node: one product per place) in \\Bigl( ... \\Bigr), each product broken so."""
    if not isinstance(gradient, sp.MatAdd) or latex_width(printer.doprint(gradient)) <= LINE_WIDTH:
        sign, parts = printer.factors(gradient, LINE_WIDTH)
        lines = list(fill(parts))
        lines[0] = sign + lines[0]
        return tuple(lines)
    lines = []
    for i, (sign, place) in enumerate(signed_terms(gradient)):
        first, *rest = _term_lines(printer, place)
        lines += [("" if i == 0 and sign == "+" else f"{sign} ") + first, *rest]
    lines[0], lines[-1] = rf"\Bigl({lines[0]}", rf"{lines[-1]}\Bigr)"
    return tuple(lines)


def _paths_latex(paths: tuple[tuple[Factor, ...], ...]) -> str:
    printer = LatexPrinter()
    items = [" ".join(printer.partial(f) for f in path) for path in paths]
    return items[0] if len(items) == 1 else r"\left(" + " + ".join(items) + r"\right)"


def _paths_matrix(graph: StepGraph, paths: tuple[tuple[Factor, ...], ...]) -> str:
    """The paths' Jacobian products, summed, as LaTeX (a sum in parentheses)."""
    return LatexPrinter().factor(add(*[row_product(graph, path) for path in paths]))


def _vanishing_beyond(formula: Formula, truncate: int | None) -> Formula:
    """A many-to-one initial state's formula, truncated: J_T reaches it only while T <= K."""
    if truncate is None:
        return formula
    note = rf"\text{{for }} T \le {truncate}\text{{, and }} \mathbf{{0}} \text{{ for }} T > {truncate}"
    return {key: None if lines is None else [*lines, note] for key, lines in formula.items()}


def _sum_k(top: str, truncate: int | None) -> str:
    """The inner sum over the step k where w enters: k = 1..t, or its last K steps when truncated."""
    if truncate is None:
        return rf"\sum_{{k=1}}^{{{top}}}"
    lower = top if truncate == 1 else rf"\max(1,\, {top}-{truncate - 1})"
    return rf"\sum_{{k={lower}}}^{{{top}}}"


def _sum_t(truncate: int | None) -> str:
    """The sum over the losses J_t; an initial state's terms, truncated, reach only the first K."""
    return r"\sum_{t=1}^{T}" if truncate is None else rf"\sum_{{t=1}}^{{\min(T,\, {truncate})}}"


def general_formula(derivation: Derivation, wrt: str) -> dict[str, list[str] | None]:
    """dJ/dw for every T, as display lines: "factors" (partials) and "analytic" (substituted)."""
    cell = derivation.cell
    f = derivation.factorized[wrt]
    assert isinstance(f, Factorized), "one state: see block_formula for several"
    graph = StepGraph(cell)
    top = "T" if f.last else "t"  # many-to-one: the one loss is J_T
    head_paths = tuple(move_paths(f.head, top))
    head, step = _paths_latex(head_paths), _paths_latex(f.step)
    head_m, step_m = _paths_matrix(graph, head_paths), _paths_matrix(graph, f.step)
    sum_t = "" if f.last else _sum_t(derivation.truncate if f.initial else None)
    if f.initial:
        product, product_m = (rf"\left(\prod_{{j=1}}^{{{top}}} {x}\right)" for x in (step, step_m))
        formula: Formula = {
            "factors": [f"{sum_t} {head}", product],
            "analytic": [rf"{sum_t} \biggl[{head_m}", rf"{product_m}\biggr]^{{T}}"],
        }
        return _vanishing_beyond(formula, derivation.truncate) if f.last else formula
    direct_paths = tuple(move_paths(f.direct, top))
    direct = _paths_latex(direct_paths) if direct_paths else ""
    direct_m = " + ".join(latex(_shaped(graph, path)) for path in direct_paths)
    if not f.tail:
        return {"factors": [f"{sum_t} {direct}"], "analytic": [f"{sum_t} {direct_m}"]}
    rows = tuple(path[:-1] for path in f.tail)
    entries = {factor_matrix(graph, path[-1]) for path in f.tail}  # how w enters a step
    product = rf"\left(\prod_{{j=k+1}}^{{{top}}} {step}\right)"
    sum_k = _sum_k(top, derivation.truncate)
    if len(entries) > 1 or len(outer_terms(next(iter(entries)))) > 1:
        # w enters a step through several nodes, or in several places of one: the analytic form is left to the terms
        first = rf"{sum_t} \biggl({direct} + {sum_k} {head}" if f.direct else f"{sum_t} {sum_k} {head}"
        last = rf"{product} {_paths_latex(f.tail)}" + (r"\biggr)" if f.direct else "")
        return {"factors": [first, last], "analytic": None}
    (enters,) = entries
    place = next(iter(outer_terms(enters)), None)  # how a weight enters: [g^T L]^T v^T, or v [g^T L] for w^T v
    tail = [add(*[row_product(graph, row) for row in rows])] if all(rows) else []
    if place is not None and not isinstance(place.left, sp.Identity):
        tail.append(place.left)
    # a number in L goes before the bracket: after the product it would read as a subtraction
    sign, tail_parts = LatexPrinter().factors(mul(*tail)) if tail else ("", [])
    tail_m = " ".join(tail_parts)
    before = sign + (f"{LatexPrinter().factor(place.right)} " if place is not None and place.transposed else "")
    after = " " + latex(transpose(place.right)) if place is not None and not place.transposed else ""
    closing = r"\biggr]" if place is not None and place.transposed else rf"\biggr]^{{T}}{after}"
    product, product_m = (rf"\left(\prod_{{j=k+1}}^{{{top}}} {x}\right)" for x in (step, step_m))
    sum_k = _sum_k(top, derivation.truncate)
    if not f.direct:
        return {
            "factors": [f"{sum_t} {sum_k} {head}", f"{product} {_paths_latex(f.tail)}"],
            "analytic": [rf"{sum_t} {sum_k} {before}\biggl[{head_m}", rf"{product_m} {tail_m}{closing}"],
        }
    return {
        "factors": [rf"{sum_t} \biggl({direct} + {sum_k} {head}", rf"{product} {_paths_latex(f.tail)}\biggr)"],
        "analytic": [
            rf"{sum_t} \biggl({direct_m} + {sum_k} {before}\biggl[{head_m}",
            rf"{product_m} {tail_m}{closing}\biggr)",
        ],
    }


def _fitting(formula: dict[str, list[str] | None]) -> dict[str, list[str] | None]:
    """The formula's displays, each None where a line would run off the page."""
    return {
        key: (lines if lines is not None and all(latex_width(x) <= LINE_WIDTH for x in lines) else None)
        for key, lines in formula.items()
    }


def _shaped(graph: StepGraph, path: tuple[Factor, ...]) -> sp.Basic:
    return term_gradient(graph, Term(0, path))


def softmax_collapse(derivation: Derivation) -> str | None:
    """The line showing dJ_t/dp_t dp_t/dy_t = (p_t - l_t)^T, or None for another loss."""
    cell = derivation.cell
    loss = cell.equation(cell.loss).rhs
    for eq in cell.equations:
        head = softmax_cross_entropy(loss, eq.rhs)
        if head is None or not isinstance(loss.p, sp.MatrixSymbol) or naming.split(loss.p.name)[0] != eq.name:
            continue
        users = [e.name for e in cell.equations if e.rhs.has(loss.p)]
        states = {s.name for s in cell.states}
        if users != [cell.loss] or not isinstance(eq.rhs.arg, sp.MatrixSymbol) or eq.name in states:
            # the derivation keeps dJ/dp and dp/dy apart here (p feeds another node or the next step, or y
            # has no name)
            continue
        p = step_symbol(eq.name, "t", eq.shape)
        y = eq.rhs.arg
        loss_sym = step_symbol(cell.loss, "t", (1, 1))
        ce = latex(jacobian(loss, p, loss_sym))
        sm = latex(jacobian(eq.rhs, y, p))
        printer = LatexPrinter()
        lhs = printer.partial(Factor(loss_sym.name, p.name)) + " " + printer.partial(Factor(p.name, y.name))
        l_t = latex(loss.target)
        p_t = latex(p)
        return (
            rf"{lhs} &= {ce} \left({sm}\right) \\"
            "\n"
            rf"&= -{l_t}^{{T}} + \left({l_t}^{{T}} \mathbf{{1}}\right) {p_t}^{{T}} = {latex(head)}"
        )
    return None


def recurrence(derivation: Derivation) -> dict[str, object]:
    program = derivation.program
    cell = derivation.cell
    lines = [(latex(a.target), display(flat_sum(with_carry(program, a)), hadamard=True)) for a in program.assigns]
    after_last = {
        sym.name: sp.MatrixSymbol(naming.step_name(naming.split(sym.name)[0], "T+1"), *sym.shape)
        for c in program.carries
        for sym in symbols_in(c.expr)  # in written order: a set's order would vary from run to run
        if sym.name.startswith(naming.GRAD)
    }
    boundary = [latex(s) for s in after_last.values()]
    grads = []
    for acc in program.accumulates:
        grads.append((rf"\frac{{\partial J}}{{\partial {naming.latex_base(acc.wrt)}}}", _over_steps(acc.expr)))
    declared = {s.name for s in cell.declared_states}
    for c in program.carries:
        if c.state not in declared:  # a delay's initial value (h_{-1}, x_0) is zeros, not an argument
            continue
        state0 = naming.latex_name(naming.step_name(c.state, 0))
        one = display(flat_sum(at_step(c.expr, 1)))
        grads.append((rf"\frac{{\partial J}}{{\partial {state0}}}", one))
    eq = derivation.equivalence
    return {
        "lines": lines,
        "boundary": boundary,
        "gradients": grads,
        "delta_identities": eq.delta_identities,
        "nontrivial": eq.nontrivial,
        "lemmas": [LEMMAS[name] for name in eq.lemmas],
        "gradient_identities": eq.gradient_identities,
        "delta_names": [latex(step_symbol(naming.grad_name(a.node), "k", a.target.shape)) for a in program.assigns],
        "node_names": [naming.latex_name(naming.step_name(a.node, "k")) for a in program.assigns],
        "initial": [naming.latex_name(naming.step_name(s.name, 0)) for s in cell.declared_states],
    }


def delay_lines(cell: Cell) -> list[dict[str, str]]:
    """What each delay state of the cell holds, as the document says it: reading h_{t-2} (``read``)
    makes the state s_t keep h_{t-1} (``kept``), h_{-1} = 0 at the start (``zero``); its delta
    (``delta``) is that of J with respect to the kept copy."""
    out = []
    for d in cell.delays:
        out.append(
            {
                "read": naming.latex_name(naming.step_name(d.source, naming.shift("t", -d.lag - 1))),
                "kept": naming.latex_name(naming.step_name(d.name, "t")),
                "zero": naming.latex_name(naming.step_name(d.name, 0)),
                "delta": naming.latex_name(naming.grad_name(naming.step_name(d.name, "t"))),
            }
        )
    return out


def _over_steps(expr: sp.Basic) -> str:
    """sum_t expr; a sum (a weight read by several nodes, or in several places of one) in brackets,
    broken between its terms where it is too wide for a line, a product between its factors."""
    if not isinstance(expr, sp.MatAdd):
        return rf"\sum_{{t=1}}^{{T}} {display(expr)}"
    return rf"\sum_{{t=1}}^{{T}} \Bigl({display(flat_sum(expr))}\Bigr)"


def _sum_of_paths(paths: tuple[tuple[Factor, ...], ...]) -> list[str]:
    """The paths as a sum of products of partials, packed into display lines."""
    printer = LatexPrinter()
    items = [" ".join(printer.partial(f) for f in path) for path in paths]
    items = [item if i == 0 else f"+ {item}" for i, item in enumerate(items)]
    return list(fill(items)) if items else ["0"]


def state_blocks(derivation: Derivation) -> dict[str, object] | None:
    """The stacked state s_t = (h_t, c_t, ...), and the blocks of dJ_t/ds_t and ds_j/ds_{j-1}:
    names (bmatrix rows), their paths (factors) and their values (analytic); None for one state."""
    if not derivation.blocks:
        return None
    cell = derivation.cell
    f = next(iter(derivation.factorized.values()))
    assert isinstance(f, Blocks)
    s = stacked_name(cell)
    graph = StepGraph(cell)
    printer = LatexPrinter()
    loss_t = naming.step_name(cell.loss, "t")
    head = [Factor(loss_t, naming.step_name(a, "t")) for a in f.states]
    step = [[Factor(naming.step_name(a, "j"), naming.step_name(b, "j-1")) for b in f.states] for a in f.states]
    entries = [(head[a], f.head[a], tuple(move_paths(f.head[a], "t"))) for a in range(len(f.states))]
    entries += [(step[a][b], f.step[a][b], f.step[a][b]) for a in range(len(f.states)) for b in range(len(f.states))]
    rows = []
    for factor, _, paths in entries:
        value = display(flat_sum(add(*[row_product(graph, p) for p in paths]))) if paths else r"\mathbf{0}"
        rows.append({"lhs": printer.partial(factor), "paths": CONTINUE.join(_sum_of_paths(paths)), "value": value})
    return {
        "name": naming.latex_base(s),
        "parts": ", ".join(naming.latex_name(naming.step_name(a, "t")) for a in f.states),
        "head": printer.partial(Factor(loss_t, naming.step_name(s, "t"))),
        "step": printer.partial(Factor(naming.step_name(s, "j"), naming.step_name(s, "j-1"))),
        "head_row": " & ".join(_display_partial(x) for x in head),
        "step_rows": r" \\[1ex] ".join(" & ".join(_display_partial(x) for x in row) for row in step),
        "entries": rows,
    }


def _display_partial(factor: Factor) -> str:
    """A partial derivative inside a bmatrix, at display size."""
    return LatexPrinter().partial(factor).replace(r"\frac", r"\dfrac", 1)


def block_formula(derivation: Derivation, wrt: str) -> tuple[Formula, list[tuple[str, list[str]]]]:
    """dJ/dw for every T through the stacked state (its "factors"; "analytic" is left to the
    blocks), and the tail ds_k/dw block by block as (lhs, lines)."""
    cell = derivation.cell
    f = derivation.factorized[wrt]
    assert isinstance(f, Blocks)
    printer = LatexPrinter()
    s = stacked_name(cell)
    top = "T" if f.last else "t"
    sum_t = "" if f.last else _sum_t(derivation.truncate if f.initial else None)
    head = printer.partial(Factor(naming.step_name(cell.loss, top), naming.step_name(s, top)))
    step = printer.partial(Factor(naming.step_name(s, "j"), naming.step_name(s, "j-1")))
    graph = StepGraph(cell)
    if f.initial:
        pick = printer.partial(Factor(naming.step_name(s, 0), wrt))
        blocks = r" \\ ".join(r"I" if a == f.initial_index else r"\mathbf{0}" for a in range(len(f.states)))
        factors = [f"{sum_t} {head}", rf"\left(\prod_{{j=1}}^{{{top}}} {step}\right) {pick}"]
        formula: Formula = {"factors": factors, "analytic": None}
        return _vanishing_beyond(formula, derivation.truncate) if f.last else formula, [
            (pick, [rf"\begin{{bmatrix}} {blocks} \end{{bmatrix}}"])
        ]
    direct_paths = tuple(move_paths(f.direct, top))
    direct = _paths_latex(direct_paths) if direct_paths else ""
    if not any(f.tail):
        direct_m = " + ".join(latex(_shaped(graph, path)) for path in direct_paths)
        return {"factors": [f"{sum_t} {direct}"], "analytic": [f"{sum_t} {direct_m}"]}, []
    tail = printer.partial(Factor(naming.step_name(s, "k"), wrt))
    product = rf"\left(\prod_{{j=k+1}}^{{{top}}} {step}\right) {tail}"
    sum_k = f"{_sum_k(top, derivation.truncate)} {head}"
    first = rf"{sum_t} \biggl({direct} + {sum_k}" if direct else f"{sum_t} {sum_k}"
    tails = [
        (printer.partial(Factor(naming.step_name(name, "k"), wrt)), _sum_of_paths(f.tail[a]))
        for a, name in enumerate(f.states)
    ]
    return {"factors": [first, product + (r"\biggr)" if direct else "")], "analytic": None}, tails
