"""Stage 3: the chain-rule expansion has exactly the terms a careful person writes down."""

import pytest

from derive.chain import Factor, expand_all, factorize, instances
from derive.unroll import unroll

STEPS = range(1, 9)


@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
def test_term_counts(seed, T):
    ex = expand_all(unroll(seed, T))
    assert ex["W_hy"].count() == T
    assert ex["W_hh"].count() == T * (T + 1) // 2
    assert ex["W_xh"].count() == T * (T + 1) // 2
    assert ex["h@0"].count() == T
    for t in range(1, T + 1):  # J_t contributes t terms, one per step k = 1..t
        assert len(ex["W_hh"].per_loss[t - 1]) == t
        assert len(ex["W_hy"].per_loss[t - 1]) == 1


@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
def test_inner_index_runs_from_1_to_t(seed, T):
    ex = expand_all(unroll(seed, T))
    for wrt in ("W_hh", "W_xh"):
        for t, terms in enumerate(ex[wrt].per_loss, start=1):
            assert [term.entry_step for term in terms] == list(range(t, 0, -1))


def test_seed_expansion_at_T3_matches_the_post_corrected(seed):
    """The origin post's third W_hh term for J_3, written as factors."""
    ex = expand_all(unroll(seed, 3))
    longest = ex["W_hh"].per_loss[2][2]
    written = "dJ_3/dp_3 dp_3/dy_3 dy_3/dh_3 dh_3/dz_3 dz_3/dh_2 dh_2/dz_2 dz_2/dh_1 dh_1/dz_1 dz_1/dW_hh"
    got = " ".join(f"d{f.num.replace('@', '_')}/d{f.den.replace('@', '_')}" for f in longest.factors)
    assert got == written


def test_W_hy_terms_are_labelled_by_their_own_loss(seed):
    """The post labels its third W_hy line J_3 although it is J_1's; here each term starts at J_t."""
    ex = expand_all(unroll(seed, 3))
    for t, terms in enumerate(ex["W_hy"].per_loss, start=1):
        (term,) = terms
        assert term.factors == (
            Factor(f"J@{t}", f"p@{t}"),
            Factor(f"p@{t}", f"y@{t}"),
            Factor(f"y@{t}", "W_hy"),
        )


def test_initial_state_terms_end_at_h0(seed):
    ex = expand_all(unroll(seed, 2))
    ends = [term.factors[-1] for term in ex["h@0"].terms]
    assert ends == [Factor("z@1", "h@0"), Factor("z@1", "h@0")]


@pytest.mark.parametrize("T", range(1, 7), ids=lambda T: f"T{T}")
@pytest.mark.parametrize("wrt", ["W_xh", "W_hh", "W_hy", "h@0"])
def test_factorized_formula_stands_for_exactly_the_enumerated_terms(seed, T, wrt):
    f = factorize(seed, wrt)
    expansion = expand_all(unroll(seed, T))[wrt]
    for t, terms in enumerate(expansion.per_loss, start=1):
        assert instances(f, t) == [term.factors for term in terms]
        assert f.count(t) == len(terms)


def test_factorized_pieces_of_the_seed(seed):
    f = factorize(seed, "W_hh")
    assert f.head == ((Factor("J@t", "p@t"), Factor("p@t", "y@t"), Factor("y@t", "h@t")),)
    assert f.step == ((Factor("h@j", "z@j"), Factor("z@j", "h@j-1")),)
    assert f.tail == ((Factor("h@k", "z@k"), Factor("z@k", "W_hh")),)
    assert f.direct == ()
    assert factorize(seed, "W_hy").direct == ((Factor("J@t", "p@t"), Factor("p@t", "y@t"), Factor("y@t", "W_hy")),)
