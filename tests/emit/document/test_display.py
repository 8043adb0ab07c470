"""A derivation in a notebook: _repr_markdown_ and _repr_latex_ show it as maths."""

from __future__ import annotations

import pytest

from conftest import CORPUS, derivation, pdflatex
from derive.derivation.pipeline import derive
from derive.emit.document.notebook import blocks
from derive.emit.outputs import pdf_missing
from derive.ir.cell import load_builtin

SEED_RECURRENCE = r"""$$
\begin{aligned}
\delta^{y}_{t} &= p_{t} - l_{t} \\
\delta^{h}_{t} &= W_{hy}^{T} \delta^{y}_{t} + W_{hh}^{T} \delta^{z}_{t+1} \\
\delta^{z}_{t} &= \left(\mathbf{1} - h_{t}^{\circ 2}\right) \odot \delta^{h}_{t} \\
\delta^{z}_{T+1} &= \mathbf{0}
\end{aligned}
$$"""

SEED_GRADIENTS = r"""$$
\begin{aligned}
\frac{\partial J}{\partial W_{xh}} &= \sum_{t=1}^{T} \delta^{z}_{t} x_{t}^{T} \\
\frac{\partial J}{\partial W_{hh}} &= \sum_{t=1}^{T} \delta^{z}_{t} h_{t-1}^{T} \\
\frac{\partial J}{\partial W_{hy}} &= \sum_{t=1}^{T} \delta^{y}_{t} h_{t}^{T} \\
\frac{\partial J}{\partial h_{0}} &= W_{hh}^{T} \delta^{z}_{1}
\end{aligned}
$$"""


def test_markdown_shows_the_cell_the_chain_rule_and_the_recurrence():
    md = derivation(3)._repr_markdown_()
    assert md.startswith("**Vanilla RNN (the seed model): BPTT, T = 3**\n\nThe cell, at each step t = 1, ..., T:")
    assert r"h_{t} &= \tanh\left(z_{t}\right) \\" in md and r"J &= \sum_{t=1}^{T} J_{t}" in md
    assert (
        r"\frac{\partial J}{\partial W_{hh}} &= \sum_{t=1}^{T} \sum_{k=1}^{t} \frac{\partial J_{t}}{\partial p_{t}}"
        in md
    )
    assert "The recurrence that computes them, from t = T down to 1:\n\n" + SEED_RECURRENCE in md
    assert md.endswith("The gradients:\n\n" + SEED_GRADIENTS + "\n")
    assert md.count("$$") == 8  # four blocks


def test_latex_has_the_same_blocks_under_text_headings():
    tex = derivation(3)._repr_latex_()
    assert tex.startswith(r"\textbf{Vanilla RNN (the seed model): BPTT, T = 3}")
    assert "\\text{The gradients:}\n" + SEED_GRADIENTS in tex


def test_cells_with_several_states_and_truncation_say_so():
    lstm = [heading for heading, _ in blocks(derive(load_builtin("lstm"), 2))]
    assert lstm[1].startswith("The chain rule: a term for every path back through time (through the stacked state")
    body = dict(blocks(derive(load_builtin("lstm"), 2)))[lstm[1]]
    assert r"\frac{\partial J_{t}}{\partial s_{t}}" in body  # through the stacked state
    truncated = blocks(derive(load_builtin("rnn"), 4, 2))
    assert (
        truncated[1][0] == "The chain rule: a term for every path back through time, each truncated to its last 2 steps"
    )
    assert r"\sum_{k=\max(1,\, t-1)}^{t}" in truncated[1][1]


@pytest.mark.pdf
@pytest.mark.skipif(pdf_missing() is not None, reason=str(pdf_missing()))
@pytest.mark.parametrize("cell", ["rnn", *(pytest.param(c, marks=pytest.mark.slow) for c in ("gru", "lstm"))])
def test_every_block_is_latex_that_compiles(cell, tmp_path):
    body = "\n".join(rf"\[{block}\]" for _, block in blocks(derive(load_builtin(cell), 3)))
    doc = "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    run, log = pdflatex(tmp_path / "display.tex", doc)
    assert run.returncode == 0, log[-2000:]


def test_truncated_many_to_one_and_stacked_cells_say_what_differs():

    from derive.spec.parser import read

    truncated = blocks(derive(load_builtin("rnn"), 4, 2))
    assert truncated[2][0].startswith(
        "The recurrence, run once for each loss J_s alone, from t = s down to max(1, s - 1)"
    )
    assert r"\sum_{s=1}^{T} \sum_{t=\max(1,\, s-1)}^{s} g_t\big(\delta^{(s)}\big)" in truncated[3][1]
    m2o = blocks(derive(read(CORPUS / "m2o_classify.cell"), 3))
    assert "many-to-one: the outputs and the loss exist at step T only" in m2o[0][0]
    assert r"J &= J_{T}" in m2o[0][1]
    lstm = blocks(derive(load_builtin("lstm"), 2))
    assert "through the stacked state s_t = (h_t, c_t)" in lstm[1][0]
