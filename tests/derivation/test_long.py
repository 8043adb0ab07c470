"""Beyond EXPANDED_MAX_STEPS: no term-by-term output, the formulas for any T, and clear limits."""

import functools

import pytest

from derive.derivation.chain import expand_all, paths
from derive.derivation.pipeline import EXPANDED_MAX_STEPS, MAX_STEPS, derive
from derive.derivation.unroll import unroll
from derive.emit.outputs import module_source, tex_source, verified
from derive.ir.cell import seed_rnn
from derive.verify.report import load_module

LONG = EXPANDED_MAX_STEPS + 5


@functools.cache
def long_derivation():
    return derive(seed_rnn(), LONG)


@pytest.mark.slow  # derives T = EXPANDED_MAX_STEPS + 5, proved at T = 12
def test_long_derivation_keeps_the_formulas_and_counts():
    d = long_derivation()
    assert not d.expanded and d.unrolled is None and d.expansions == {}
    # the proof expands every monomial of every path: PROOF_MAX_MONOMIAL_STEPS allows T = 12 (4320: 1.2 s)
    assert d.equivalence.steps == 12 and d.equivalence.holds
    assert d.term_count("W_hh") == LONG * (LONG + 1) // 2
    assert d.term_count("W_hy") == LONG
    assert d.term_count("h@0") == LONG


def test_term_counts_from_the_formula_match_the_enumeration():
    d = derive(seed_rnn(), 7)
    for wrt, expansion in d.expansions.items():
        assert d.term_count(wrt) == expansion.count()


@pytest.mark.slow  # derives T = EXPANDED_MAX_STEPS + 5, proved at T = 12
def test_long_module_has_only_the_fast_path():
    module = load_module(module_source(long_derivation()), "rnn_long")
    assert module.BY_DEFINITION is False
    params = module.init_params(3, 4, 5)
    with pytest.raises(NotImplementedError, match=f"generated for T <= {EXPANDED_MAX_STEPS}"):
        module.gradients_by_definition(params, [[0.0] * 3] * LONG, [0] * LONG)
    report = verified(long_derivation(), module_source(long_derivation()))
    assert report.passed, report.failures()
    assert {impl for impl, _ in report.errors} == {"loss_and_gradients"}


@pytest.mark.slow  # derives T = EXPANDED_MAX_STEPS + 5, proved at T = 12
def test_long_document_says_what_it_leaves_out():
    d = long_derivation()
    text = tex_source(d, verified(d, module_source(d)))
    assert f"written out one by one for $T \\le {EXPANDED_MAX_STEPS}$ only" in text
    assert "term by term:" not in text
    assert "For $T = 12$ it was checked in SymPy" in text
    assert f"$\\partial J / \\partial W_{{hh}}$: {LONG * (LONG + 1) // 2} terms}}" in text


def test_path_enumeration_is_not_recursive():
    """A long chain of h_t -> z_t -> h_{t-1} must not hit Python's recursion limit."""
    u = unroll(seed_rnn(), 700)
    found = paths(u, "J@700", "h@0")
    assert len(found) == 1 and len(found[0]) == 3 + 2 * 700


def test_steps_are_bounded():
    with pytest.raises(ValueError, match=f"1..{MAX_STEPS}"):
        derive(seed_rnn(), MAX_STEPS + 1)
    assert len(expand_all(unroll(seed_rnn(), 2))) == 4
