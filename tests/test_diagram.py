"""The unrolled graph in the document: its nodes, its arrows, and the highlighted term."""

from __future__ import annotations

from derive.cell import load_builtin, seed_rnn
from derive.diagram import DIAGRAM_MAX_STEPS, diagram, path_text


def test_the_seed_graph_at_T3():
    d = diagram(seed_rnn(), 3)
    nodes = [line for line in d.tikz if line.startswith(r"\node[var]")]
    edges = [line for line in d.tikz if line.startswith(r"\draw")]
    assert len(nodes) == 5 * 3 + 3 + 1  # z, h, y, p, J at each step, x at each step, h_0
    assert len(edges) == 6 * 3  # x->z, h_{t-1}->z, z->h, h->y, y->p, p->J at each step
    assert sum("path" in e for e in edges) == 8  # J_3 ... z_1: the edges of the longest W_hh term
    assert r"\node[var] (n0) at (2.40, 1.15) {$z_{1}$};" in nodes
    assert d.wrt == "W_hh"
    assert path_text(d) == (
        r"J_{3} \to p_{3} \to y_{3} \to h_{3} \to z_{3} \to h_{2} \to z_{2} \to h_{1} \to z_{1} \to W_{hh}"
    )
    assert d.tikz[-1] == r"\node[enters] at (n0.east) {$\leftarrow W_{hh}$};"  # W_hh enters at z_1


def test_long_sequences_are_drawn_short_and_gated_cells_pick_a_recurrent_weight():
    assert diagram(seed_rnn(), 50).steps == DIAGRAM_MAX_STEPS
    lstm = diagram(load_builtin("lstm"), 2)
    assert lstm.wrt == "U_f" and path_text(lstm).startswith(r"J_{2} \to y_{2} \to h_{2} \to c_{2} \to f_{2} \to h_{1}")


def test_several_inputs_get_a_row_each():
    from pathlib import Path

    from derive.spec import read

    d = diagram(read(Path(__file__).parent / "cells" / "multi_task.cell"), 2)
    places = [line.split(" at ")[1].split(" {")[0] for line in d.tikz if line.startswith(r"\node[var]")]
    assert len(places) == len(set(places))  # no node drawn over another
    assert r"{$x_{1}$}" in "".join(d.tikz) and r"{$a_{1}$}" in "".join(d.tikz)
