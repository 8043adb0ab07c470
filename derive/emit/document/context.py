"""Stage 6b: print a derivation (and a verification report) into the LaTeX template's strings.

The document follows the origin post's "Derivadas Algebraicas" layout, corrected:
inner sums start at k = 1 (h_0 is given), each heading names the matrix its
section differentiates, and the analytic derivatives keep their transposes,
outer products and diagonal matrices.  Long products are broken across lines
so that the PDF never runs off the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from derive.derivation.chain import Blocks
from derive.derivation.pipeline import Derivation
from derive.emit.document.diagram import diagram, path_text
from derive.emit.document.formulas import (
    _fitting,
    analytic_groups,
    block_formula,
    delay_lines,
    expansion_groups,
    general_formula,
    recurrence,
    softmax_collapse,
    state_blocks,
)
from derive.emit.document.jacobians import local_derivatives, weight_places
from derive.emit.document.layout import CONTINUE, md_text, shape_latex, step_symbol, tex_text
from derive.emit.printing import latex
from derive.ir import naming
from derive.ir.cell import Cell, Equation
from derive.ir.exprs import valued
from derive.tools.flow.flow import Flow
from derive.verify.report import CHECKS, IMPLEMENTATIONS, SYMPY_MAX_STEPS, TOLERANCE, Report


def verification_table(report: Report, cell: Cell) -> dict[str, object]:
    rows = []
    initial = {
        naming.initial_arg(s.name): naming.step_name(s.name, 0) for s in cell.declared_states
    }  # the argument h0 is h_0
    for row in report.rows:
        label = r"\text{loss } J" if row == "loss" else naming.latex_name(initial.get(row, row))
        cells = [_measured(report.error(impl, check, row)) for impl in IMPLEMENTATIONS for check in CHECKS]
        rows.append((label, cells))
    return {
        "rows": rows,
        "checks": CHECKS,
        "tolerances": [f"{TOLERANCE[c]:.0e}" for c in CHECKS],
        "passed": report.passed,
        "sympy_skipped": report.error(IMPLEMENTATIONS[0], "sympy", "loss") is None,
        "sympy_max": SYMPY_MAX_STEPS,
        "failures": report.failures(),
    }


def constant_latex(c: Equation) -> str:
    """A named constant with its value, stated once: ``\\alpha = 0.3``, or ``c = \\frac{dt}{\\tau} = 0.05``."""
    value = valued(c.rhs)
    name = naming.latex_base(c.name)
    if c.rhs.is_Number:
        return f"{name} = {number_latex(value)}"
    return f"{name} = {latex(c.rhs)} = {number_latex(value)}"


def number_latex(value: sp.Rational) -> str:
    """A rational as the spec would write it: a decimal where one is exact (0.05), else a fraction."""
    q = int(value.q)
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    if q == 1:
        text = f"{float(value):.12g}"
        return text if "e" not in text else latex(value)
    return latex(value)


def _measured(err: float | None) -> str | None:
    """A measured error to two digits, or None where the check did not run; each format wraps it
    (the .tex in \\measured, which the golden-file test masks: it varies with the machine)."""
    return None if err is None else f"{err:.1e}"


def _diagram(derivation: Derivation) -> dict[str, object]:
    d = diagram(derivation.cell, derivation.steps)
    image = naming.figure_filename("graph", derivation.cell.name, derivation.steps, derivation.truncate)
    return {"steps": d.steps, "wrt": naming.latex_name(d.wrt), "path": path_text(d), "tikz": d.tikz, "image": image}


def flow_context(flows: Sequence[Flow], image: str) -> dict[str, object]:
    """The gradient-flow figure's file and what its caption says (the curves are in the PNG only:
    their values vary with the machine's floating point in the last digits)."""
    first = flows[0]
    scales = [f"{f.scale:g}" for f in flows if f.scale is not None]
    return {
        "image": image,
        "steps": first.steps,
        "stacked": len(first.states) > 1,
        "states": ", ".join(naming.latex_name(naming.step_name(s, "k")) for s in first.states),
        "recurrent": ", ".join(f"${naming.latex_name(w)}$" for w in first.recurrent),
        "scales": ", ".join(scales[:-1]) + (" and " if len(scales) > 1 else "") + scales[-1] if scales else "",
        "sizes": ", ".join(f"$n_{{{d}}} = {n}$" for d, n in first.sizes.items()),
        "seed": first.seed,
    }


def document_context(
    derivation: Derivation, report: Report, command: str, flow: dict[str, object] | None = None
) -> dict[str, object]:
    cell = derivation.cell
    T = derivation.steps
    delays = {d.name for d in cell.delays}  # their updates copy (h_{t-1} = h_{t-1}): a sentence says them
    model = [(latex(step_symbol(e.name, "t", e.shape)), latex(e.rhs)) for e in cell.equations if e.name not in delays]
    unrolled = []
    if derivation.unrolled is not None:
        eqs, n = derivation.unrolled.equations, len(cell.equations)
        unrolled = [
            [(latex(lhs), latex(rhs)) for lhs, rhs in eqs[i : i + n] if naming.split(lhs.name)[0] not in delays]
            for i in range(0, len(eqs), n)
        ]
    sections = []
    for wrt, f in derivation.factorized.items():
        expanded = derivation.expanded
        counts = (f.block_count if isinstance(f, Blocks) else f.count) if expanded else None
        general, tail = block_formula(derivation, wrt) if derivation.blocks else (general_formula(derivation, wrt), [])
        sections.append(
            {
                "name": naming.latex_name(wrt),
                "total": derivation.term_count(wrt),
                "paths": derivation.path_count(wrt),
                "counts": " + ".join(str(counts(t, derivation.truncate)) for t in cell.loss_steps(T)) if counts else "",
                "expansion": expansion_groups(derivation, wrt) if expanded else (),
                "analytic": analytic_groups(derivation, wrt) if expanded and not derivation.blocks else (),
                "is_state": wrt not in cell.param_names,
                "general": _fitting(general),
                "tail": [(lhs, CONTINUE.join(lines)) for lhs, lines in tail],
            }
        )
    return {
        "cell": cell,
        "title": tex_text(cell.title),
        "heading": (
            f"Backpropagation through time for the {tex_text(cell.title)}, $T = {T}$"
            if derivation.truncate is None
            else f"Truncated backpropagation through time for the {tex_text(cell.title)}, "
            f"$T = {T}$, $K = {derivation.truncate}$"
        ),
        "heading_md": (
            f"Backpropagation through time for the {md_text(cell.title)}, $T = {T}$"
            if derivation.truncate is None
            else f"Truncated backpropagation through time for the {md_text(cell.title)}, "
            f"$T = {T}$, $K = {derivation.truncate}$"
        ),
        "steps": T,
        "expanded": derivation.expanded,
        "truncate": derivation.truncate,
        "proof_truncate": derivation.equivalence.truncate,
        "loss_last": cell.loss_mode == "last",
        "target_kind": cell.targets[0].kind,
        "expanded_max": derivation.expandable,
        "checked_steps": derivation.equivalence.steps,
        "command": command,
        "dims": [
            (naming.latex_name(v.name), latex(v.at("t").shape[0]))
            for v in cell.inputs + cell.targets + cell.declared_states
        ],
        "delays": delay_lines(cell),
        "params": [(naming.latex_name(p.name), shape_latex(p.symbol)) for p in cell.params],
        "constants": [constant_latex(c) for c in cell.constants],
        "model": model,
        "unrolled": unrolled,
        "sections": sections,
        "blocks": state_blocks(derivation),
        "locals": local_derivatives(derivation),
        "places": weight_places(derivation),
        "collapse": softmax_collapse(derivation),
        "recurrence": recurrence(derivation),
        "diagram": _diagram(derivation),
        "verification": verification_table(report, cell),
        "implementations": IMPLEMENTATIONS,
        "flow": flow,
        "continue_line": CONTINUE,  # a display line broken inside align*
    }
