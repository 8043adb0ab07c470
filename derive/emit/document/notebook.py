"""A derivation as a notebook shows it: the cell, each gradient's chain-rule sum, and the
recurrence that computes them, as rendered maths.

``Derivation._repr_markdown_`` and ``_repr_latex_`` call ``markdown`` and ``latex`` here, so that
a derivation at the end of a notebook cell displays itself (Jupyter renders ``$$`` blocks with
MathJax).  The LaTeX is the document's own (``derive.emit.document.context``), so the notebook and the PDF
say the same thing; the full document, with the terms one by one and the verification, is what
``bptt derive`` writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from derive.derivation.chain import stacked_name
from derive.emit.document.formulas import block_formula, general_formula, recurrence
from derive.emit.document.layout import CONTINUE, step_symbol
from derive.emit.printing import latex
from derive.ir import naming

if TYPE_CHECKING:
    from derive.derivation.pipeline import Derivation


def _aligned(rows: list[tuple[str, str]]) -> str:
    body = " \\\\\n".join(f"{lhs} &= {rhs}" for lhs, rhs in rows)
    return f"\\begin{{aligned}}\n{body}\n\\end{{aligned}}"


def blocks(derivation: Derivation) -> list[tuple[str, str]]:
    """(heading, a LaTeX aligned block) for each part of the summary, in reading order."""
    cell = derivation.cell
    model = [(latex(step_symbol(e.name, "t", e.shape)), latex(e.rhs)) for e in cell.equations]
    model.append(("J", r"J_{T}" if cell.loss_mode == "last" else r"\sum_{t=1}^{T} J_{t}"))
    last = cell.loss_mode == "last"
    heading = "The cell, at each step t = 1, ..., T" + (
        " (many-to-one: the outputs and the loss exist at step T only, and the outputs' deltas are zero before it)"
        if last
        else ""
    )
    out = [(heading, _aligned(model))]
    rows = []
    for wrt in derivation.factorized:
        formula = block_formula(derivation, wrt)[0] if derivation.blocks else general_formula(derivation, wrt)
        if formula["factors"]:
            lhs = rf"\frac{{\partial J}}{{\partial {naming.latex_name(wrt)}}}"
            rows.append((lhs, CONTINUE.join(formula["factors"])))
    K = derivation.truncate
    truncated = "" if K is None else f", each truncated to its last {K} steps"
    stacked = ""
    if derivation.blocks:
        names = ", ".join(
            naming.latex_name(naming.step_name(st.name, "t"))
            if naming.delay_of(st.name)
            else f"{naming.latex_name(st.name)}_t"
            for st in cell.states
        )
        stacked = f" (through the stacked state {stacked_name(cell)}_t = ({names}); the document writes its blocks)"
    out.append((f"The chain rule: a term for every path back through time{truncated}{stacked}", _aligned(rows)))
    r = recurrence(derivation)
    lines = cast(list[tuple[str, str]], r["lines"]) + [(zero, r"\mathbf{0}") for zero in cast(list[str], r["boundary"])]
    gradients = cast(list[tuple[str, str]], r["gradients"])
    if K is None:
        out.append(("The recurrence that computes them, from t = T down to 1", _aligned(lines)))
        out.append(("The gradients", _aligned(gradients)))
        return out
    run = f"from t = s down to max(1, s - {K - 1}), with the outputs' deltas zero below s and nothing carried into s"
    out.append((f"The recurrence, run once for each loss J_s alone, {run}", _aligned(lines)))
    total = [
        (
            r"\frac{\partial J}{\partial w}",
            rf"\sum_{{s=1}}^{{T}} \sum_{{t=\max(1,\, s-{K - 1})}}^{{s}} g_t\big(\delta^{{(s)}}\big)",
        )
    ]
    out.append(
        (
            "The gradients: each run's summands g_t below, read with its deltas, added over the runs",
            _aligned(total + gradients),
        )
    )
    return out


def title(derivation: Derivation) -> str:
    truncated = "" if derivation.truncate is None else f", K = {derivation.truncate}"
    return f"{derivation.cell.title}: BPTT, T = {derivation.steps}{truncated}"


def markdown(derivation: Derivation) -> str:
    parts = [f"**{title(derivation)}**"]
    for heading, body in blocks(derivation):
        parts.append(f"{heading}:\n\n$$\n{body}\n$$")
    return "\n\n".join(parts) + "\n"


def latex_display(derivation: Derivation) -> str:
    parts = [f"\\textbf{{{title(derivation)}}}"]
    for heading, body in blocks(derivation):
        parts.append(f"\\text{{{heading}:}}\n$$\n{body}\n$$")
    return "\n".join(parts) + "\n"
