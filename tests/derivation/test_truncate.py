"""Truncated BPTT (``--truncate K``): each inner sum keeps its last K steps (k > t - K), in the
expansion, the LaTeX, the by-definition code and the fast path; checked against the
hand-written reference loops truncated the same way and against SymPy's truncated chain rule."""

import functools

import numpy as np
import pytest

from conftest import CORPUS, pdflatex
from derive import cli
from derive.derivation.adjoint import _equal, check_equivalence, truncated_gradients
from derive.derivation.analytic import term_gradient
from derive.derivation.chain import expand_all, factorize
from derive.derivation.pipeline import derive
from derive.derivation.unroll import unroll
from derive.emit.outputs import module_source, pdf_missing, tex_source, verified
from derive.ir.cell import load_builtin
from derive.ir.exprs import add
from derive.spec.parser import read
from derive.verify.report import (
    NUMERIC_SIZES,
    REFERENCES,
    RTOL_EXACT,
    SYMPY_SIZES,
    format_table,
    load_module,
    max_rel_error,
    random_problem,
    sympy_gradients,
)

CASES = [(T, K) for T in (1, 3, 5) for K in (1, 2, 4)]
GATED = {"gru", "lstm"}  # beyond T = 1 up to a second or more each: the slow tier, as is T = 5
TRUNCATED = [
    pytest.param(
        cell, T, K, id=f"T{T}-K{K}-{cell}", marks=pytest.mark.slow if T == 5 or (cell in GATED and T > 1) else ()
    )
    for T, K in CASES
    for cell in sorted(REFERENCES)
]


@functools.cache
def module(cell: str, steps: int, truncate: int | None):
    d = derive(load_builtin(cell), steps, truncate)
    return load_module(module_source(d), f"{cell}_T{steps}_K{truncate}")


@pytest.mark.parametrize("cell, T, K", TRUNCATED)
def test_both_implementations_match_the_truncating_reference_loop(cell, T, K):
    m = module(cell, T, K)
    problem = random_problem(m, T, NUMERIC_SIZES, batch=2)
    want_loss, want = REFERENCES[cell](*problem, truncate=K)
    implementations = ["loss_and_gradients"] + (["gradients_by_definition"] if m.BY_DEFINITION else [])
    for impl in implementations:
        loss, got = getattr(m, impl)(*problem)
        assert max_rel_error(loss, want_loss) <= RTOL_EXACT
        assert set(got) == set(want)
        for name in want:
            assert max_rel_error(got[name], want[name]) <= RTOL_EXACT, f"{impl} {name}"


@pytest.mark.parametrize("cell", ["rnn", pytest.param("lstm", marks=pytest.mark.slow)])
def test_truncation_changes_the_gradient_only_when_T_exceeds_K(cell):
    full = module(cell, 4, None)
    problem = random_problem(full, 4, NUMERIC_SIZES, batch=2)
    _, g_full = full.loss_and_gradients(*problem)
    _, g_same = module(cell, 4, 4).loss_and_gradients(*problem)  # K = T keeps every term
    _, g_cut = module(cell, 4, 2).loss_and_gradients(*problem)
    for name in g_full:
        assert max_rel_error(g_same[name], g_full[name]) <= RTOL_EXACT
    recurrent = "W_hh" if cell == "rnn" else "U_f"
    assert max_rel_error(g_cut[recurrent], g_full[recurrent]) > 1e-3  # older terms really dropped
    assert max_rel_error(g_cut["W_hy" if cell == "rnn" else "W_y"], g_full["W_hy" if cell == "rnn" else "W_y"]) <= (
        RTOL_EXACT
    )  # the output layer has no inner sum: truncation leaves it alone
    assert max_rel_error(g_cut["h0"], g_full["h0"]) > 1e-3  # only J_1 and J_2 reach h_0 within 2 steps


def test_many_to_one_initial_state_gradient_vanishes_beyond_K():
    d = derive(read(CORPUS / "m2o_lstm.cell"), 4, 3)
    m = load_module(module_source(d), "m2o_lstm_T4_K3")
    _, grads = m.loss_and_gradients(*random_problem(m, 4, NUMERIC_SIZES, batch=2))
    assert np.all(grads["h0"] == 0) and np.all(grads["c0"] == 0)  # J_4 alone, and 4 > K = 3
    assert d.term_count("h@0") == 0 and d.path_count("c@0") == 0


@pytest.mark.slow  # SymPy on the GRU
def test_sympy_truncated_chain_rule_agrees_with_the_reference_loop():
    m = module("gru", 3, 2)
    problem = random_problem(m, 3, SYMPY_SIZES)
    _, want = REFERENCES["gru"](*problem, truncate=2)
    _, got = sympy_gradients(load_builtin("gru"), *problem, truncate=2)
    for name in want:
        assert max_rel_error(got[name], want[name]) <= RTOL_EXACT, name


@pytest.mark.parametrize(
    "spec",
    [
        spec if spec == "m2o_classify" else pytest.param(spec, marks=pytest.mark.slow)  # one in the fast tier
        for spec in ("two_states", "m2o_lstm", "m2o_classify", "softmax_mse", "state_loss", "loss_param", "names")
    ],
)
def test_corpus_cells_verify_truncated_against_sympy(spec):
    d = derive(read(CORPUS / f"{spec}.cell"), 4, 2)
    report = verified(d, module_source(d))
    assert report.passed, report.failures()
    assert report.error("loss_and_gradients", "sympy", "loss") is not None
    assert report.error("loss_and_gradients", "finite differences", "loss") is None  # not a yardstick here


@pytest.mark.slow  # the LSTM at T = 4
def test_expansion_keeps_the_last_K_steps_of_each_inner_sum(seed):
    d = derive(seed, 5, 2)
    for terms in d.expansions["W_hh"].per_loss:
        t = terms[0].loss_step
        assert [term.entry_step for term in terms] == [k for k in (t, t - 1) if k >= 1]
    assert [len(terms) for terms in d.expansions["h@0"].per_loss] == [1, 1, 0, 0, 0]
    assert d.term_count("W_hh") == 1 + 2 + 2 + 2 + 2
    assert d.term_count("h@0") == 2
    lstm = derive(load_builtin("lstm"), 4, 3)
    assert [len(terms) for terms in lstm.expansions["U_o"].per_loss] == [1, 2, 3, 3]
    assert lstm.path_count("U_o") == factorize(load_builtin("lstm"), "U_o").total(4, 3)


def test_the_proof_tells_truncations_apart(seed):
    program = derive(seed, 3).program
    unrolled = unroll(seed, 3)
    expansions = expand_all(unrolled)
    assert check_equivalence(program, unrolled, expansions, truncate=2).holds

    def kept_terms(k: int):
        return add(*[term_gradient(unrolled, term) for term in expansions["W_hh"].truncated(k).terms])

    runs = truncated_gradients(program, 3, 2)["W_hh"]
    assert _equal(runs, kept_terms(2))
    assert not _equal(runs, kept_terms(1)) and not _equal(runs, kept_terms(3))


def test_document_states_the_truncated_sums(seed):
    d = derive(seed, 3, 2)
    tex = tex_source(d, verified(d, module_source(d)))
    assert r"\sum_{k=\max(1,\, t-1)}^{t}" in tex
    assert r"\sum_{t=1}^{\min(T,\, 2)}" in tex  # h_0 enters at step 1: kept for t <= K
    assert "Truncated backpropagation through time" in tex and r"$K = 2$" in tex
    assert "5 terms (1 + 2 + 2)" in tex
    # the recurrence section writes the gradients as the truncated runs give them
    assert r"\sum_{s=1}^{T} \; \sum_{t=\max(1,\, s - 1)}^{s} g_t\big(\delta^{(s)}\big)" in tex
    assert r"exactly its terms with $k > s - 2$" in tex


def test_cli_truncate(tmp_path, capsys):
    assert cli.main(["emit", "--truncate", "2", "--out", str(tmp_path)]) == 0
    source = (tmp_path / "rnn_T3_K2.py").read_text()
    assert "TRUNCATE = 2" in source and "--truncate 2" in source
    assert cli.main(["verify", "--cell", "elman", "-T", "4", "-K", "3"]) == 0
    out = capsys.readouterr().out
    assert "truncated to K = 3 steps" in out and "all checks pass" in out
    for bad in ("0", "-1", "two", "1001"):
        with pytest.raises(SystemExit) as exit:
            cli.main(["emit", "--truncate", bad, "--out", str(tmp_path / "x")])
        assert exit.value.code == 2
        assert "--truncate" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.pdf
@pytest.mark.skipif(pdf_missing() is not None, reason=str(pdf_missing()))
@pytest.mark.parametrize("cell", ["rnn", pytest.param("lstm", marks=pytest.mark.slow)])
def test_truncated_document_compiles_with_nothing_off_the_page(cell, tmp_path):
    d = derive(load_builtin(cell), 4, 2)
    run, log = pdflatex(tmp_path / "doc.tex", tex_source(d, verified(d, module_source(d))))
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log


def test_a_loss_that_reads_the_state_keeps_its_own_share_at_its_own_step_only():
    # J_t = 1/2 |h_t - r_t|^2: the run for J_s must not pick up J_k's (k < s) direct share of dJ/dh_k
    d = derive(read(CORPUS / "state_loss.cell"), 4, 2)
    m = load_module(module_source(d), "state_loss_T4_K2")
    problem = random_problem(m, 4, SYMPY_SIZES)
    _, want = sympy_gradients(read(CORPUS / "state_loss.cell"), *problem, truncate=2)
    for impl in ("loss_and_gradients", "gradients_by_definition"):
        _, got = getattr(m, impl)(*problem)
        for name in want:
            assert max_rel_error(got[name], want[name]) <= RTOL_EXACT, (impl, name)


@pytest.mark.slow
def test_long_truncated_custom_cell_is_still_checked_by_sympy():
    d = derive(read(CORPUS / "multi_task.cell"), 8, 2)
    report = verified(d, module_source(d))
    assert report.passed
    assert report.error("loss_and_gradients", "sympy", "W") is not None  # at T = 3, where K = 2 cuts
    assert "SymPy checked loss_and_gradients at T = 3" in format_table(report)


@pytest.mark.slow  # the LSTM at T = 10
def test_the_proof_cuts_even_where_K_exceeds_the_proved_T():
    d = derive(load_builtin("lstm"), 10, 5)  # the proof fits T = 3: it runs with K = 2 there
    assert d.equivalence.steps == 3 and d.equivalence.truncate == 2 and d.equivalence.holds


def test_many_to_one_initial_state_is_documented_as_vanishing_beyond_K():
    d = derive(read(CORPUS / "m2o_classify.cell"), 3, 2)
    tex = tex_source(d, verified(d, module_source(d)))
    assert r"\text{for } T \le 2\text{, and } \mathbf{0} \text{ for } T > 2" in tex
    assert "and for $T = 3$ there is no term: truncation drops them all." in tex
