"""The LaTeX document: its content, and that pdflatex compiles it with nothing off the page."""

import re
import shutil
import subprocess

import pytest

from conftest import derivation, load_cell, module_source, pdflatex
from derive.derivation.pipeline import derive
from derive.emit.document.formulas import softmax_collapse
from derive.emit.document.jacobians import local_derivatives
from derive.emit.outputs import pdf_missing, tex_source, verified

needs_pdflatex = pytest.mark.skipif(pdf_missing() is not None, reason=str(pdf_missing()))


def tex(T):
    d = derivation(T)
    return tex_source(d, verified(d, module_source(T)))


def test_local_derivative_table(seed):
    rows = {factor: (value, shape) for factor, value, shape in local_derivatives(derivation(3))}
    assert rows[r"\frac{\partial z_{t}}{\partial h_{t-1}}"] == ("W_{hh}", r"n_{h} \times n_{h}")
    assert rows[r"\frac{\partial h_{t}}{\partial z_{t}}"] == (
        r"\operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right)",
        r"n_{h} \times n_{h}",
    )
    assert rows[r"\frac{\partial z_{t}}{\partial W_{hh}}"][0] == r"g^{T} \mapsto g\, h_{t-1}^{T}"
    assert rows[r"\frac{\partial J_{t}}{\partial p_{t}}"] == (
        r"-l_{t}^{T} \operatorname{diag}\left(p_{t}\right)^{-1}",
        r"1 \times n_{y}",
    )


def test_softmax_cross_entropy_collapse_is_shown():
    assert softmax_collapse(derivation(3)).endswith(r"= \left(p_{t} - l_{t}\right)^{T}")


def test_document_corrects_the_seeds_slips():
    text = tex(3)
    assert r"\sum_{k=0}" not in text  # the inner sums start at k = 1
    # each W_hy group is labelled by its own loss: J_3, J_2, J_1 in turn
    section = text.split(r"\subsection{$\partial J / \partial W_{hy}$")[1].split(r"\subsection")[0]
    assert re.findall(r"\\frac\{\\partial J_\{(\d)\}\}\{\\partial W_\{hy\}\} &=", section) == ["3", "2", "1"]
    assert r"\delta^{n}_{k} = \sum_{t=k}^{T}" in text


def test_document_states_the_equivalence_and_the_term_counts():
    text = tex(3)
    assert "all 9 identities for the deltas" in text
    assert r"$\partial J / \partial W_{hh}$: 6 terms (1 + 2 + 3)" in text
    assert r"$\partial J / \partial W_{hy}$: 3 terms (1 + 1 + 1)" in text


def _compile(tmp_path, T):
    return pdflatex(tmp_path / f"rnn_T{T}.tex", tex(T))


@pytest.mark.pdf
@needs_pdflatex
@pytest.mark.parametrize("T", [1, *(pytest.param(T, marks=pytest.mark.slow) for T in (3, 6))], ids=lambda T: f"T{T}")
def test_pdf_compiles_with_nothing_off_the_page(tmp_path, T):
    run, log = _compile(tmp_path, T)
    assert run.returncode == 0, log[-2000:]
    assert (tmp_path / f"rnn_T{T}.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull \\hbox" not in log
    if shutil.which("pdftoppm"):  # and it renders, page by page
        subprocess.run(["pdftoppm", "-r", "20", "-png", f"rnn_T{T}.pdf", "page"], cwd=tmp_path, check=True)
        assert len(list(tmp_path.glob("page-*.png"))) >= 3


# ---- a tied weight, and a weight in several places of one node --------------------------------


def _rows(cell: str) -> dict[str, str]:
    return {factor: value for factor, value, _ in local_derivatives(derive(load_cell(cell), 1))}


def test_a_transposed_weight_maps_g_to_v_g_transposed():
    rows = _rows("corpus/tied")
    assert rows[r"\frac{\partial y_{t}}{\partial E}"] == r"g^{T} \mapsto h_{t}\, g^{T}"  # y = E^T h
    assert rows[r"\frac{\partial a_{t}}{\partial E}"] == r"g^{T} \mapsto g\, x_{t}^{T}"  # a = E x
    assert rows[r"\frac{\partial y_{t}}{\partial h_{t}}"] == "E^{T}"


def test_a_weight_in_several_places_maps_g_to_the_sum_of_its_places():
    rows = _rows("corpus/weight_in_two_terms")
    assert rows[r"\frac{\partial y_{t}}{\partial V}"] == (
        r"g^{T} \mapsto g\, \left(V q_{t}\right)^{T} + \left(g^{T} V\right)^{T} q_{t}^{T}"  # y = V (V q)
    )
    assert rows[r"\frac{\partial h_{t}}{\partial U}"].split(" \\\\\n&\\qquad ") == [
        r"g^{T} \mapsto \Bigl(g^{T} \operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right)\Bigr)^{T} h_{t-1}^{T}",
        r"- \frac{1}{2} U h_{t-1}\, g^{T} \operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right)",
        r"- \frac{1}{2} \Bigl(g^{T} \operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right) U^{T}\Bigr)^{T} "
        r"h_{t-1}^{T}",
    ]


def test_a_number_in_a_places_jacobian_goes_in_front_of_it():
    """-2 W x inside tanh: -2 (g^T L)^T x^T, not (g^T -2 L)^T x^T, which reads as a difference."""
    rows = _rows("corpus/reuse")
    assert rows[r"\frac{\partial h_{t}}{\partial W}"] == (
        r"g^{T} \mapsto -2 \left(g^{T} \operatorname{diag}\left(\mathbf{1} - h_{t}^{\circ 2}\right)\right)^{T} "
        r"x_{t}^{T}"
    )
