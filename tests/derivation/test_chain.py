"""Stage 3: the chain-rule expansion has exactly the terms a careful person writes down."""

import pytest

from conftest import CORPUS
from derive.derivation.chain import (
    Blocks,
    Factor,
    Term,
    block_expansion,
    block_instances,
    differentiable_names,
    expand_all,
    factorize,
    instances,
    kept,
    paths,
)
from derive.derivation.unroll import unroll
from derive.ir import naming
from derive.ir.cell import load_builtin
from derive.spec.parser import read

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


# ---- several states: the block factorization through the stacked state -------------------

MULTI = {
    "lstm": lambda: load_builtin("lstm"),
    "two_states": lambda: read(CORPUS / "two_states.cell"),
    "m2o_lstm": lambda: read(CORPUS / "m2o_lstm.cell"),
    "narx": lambda: read(CORPUS / "narx.cell"),  # h[t-2], x[t-1]: s_t = (h_t, h_{t-1}, x_t)
    "m2o_lags": lambda: read(CORPUS / "m2o_lags.cell"),  # h[t-3], x[t-2], gated, many-to-one
}


@pytest.mark.parametrize("K", [None, 1, 2], ids=lambda K: f"K{K}")
@pytest.mark.parametrize("T", [1, 2, 3], ids=lambda T: f"T{T}")
@pytest.mark.parametrize("name", MULTI)
def test_block_formula_stands_for_exactly_the_paths_of_the_unrolled_graph(name, T, K):
    cell = MULTI[name]()
    unrolled = unroll(cell, T)
    for wrt in differentiable_names(cell):
        f = factorize(cell, wrt)
        assert isinstance(f, Blocks)
        total = 0
        for loss in unrolled.losses:
            t = naming.step_of(loss.name)
            raw = [p for p in paths(unrolled, loss.name, wrt) if kept(Term(t, p), K)]
            assert sorted(block_instances(f, t, K), key=repr) == sorted(raw, key=repr), (wrt, t)
            assert f.count(t, K) == len(raw)
            total += len(raw)
        assert f.total(T, K) == total


@pytest.mark.parametrize("K", [1, 2, 3], ids=lambda K: f"K{K}")
@pytest.mark.parametrize("T", [1, 3, 5], ids=lambda T: f"T{T}")
@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_truncated_counts_of_one_state_cells(name, T, K):
    cell = load_builtin(name)
    unrolled = unroll(cell, T)
    for wrt in differentiable_names(cell):
        f = factorize(cell, wrt)
        per_loss = [
            [p for p in paths(unrolled, j.name, wrt) if kept(Term(naming.step_of(j.name), p), K)]
            for j in unrolled.losses
        ]
        assert [f.count(t, K) for t in range(1, T + 1)] == [len(p) for p in per_loss]
        assert [sorted(instances(f, t, K), key=repr) for t in range(1, T + 1)] == [
            sorted(p, key=repr) for p in per_loss
        ]
        assert f.total(T, K) == sum(len(p) for p in per_loss)


def test_lstm_block_counts():
    cell = load_builtin("lstm")
    f = factorize(cell, "W_f")
    # one path J_t -> y_t -> h_t; ds_j/ds_{j-1} has 4, 1 / 3, 1 paths (h <- o, c <- f, i, g; h <- c <- c)
    assert [len(p) for p in f.head] == [1, 0]
    assert [[len(p) for p in row] for row in f.step] == [[4, 1], [3, 1]]
    assert [len(p) for p in f.tail] == [1, 1]
    assert [f.count(t) for t in range(1, 5)] == [1, 6, 30, 145]  # 1, then head M^m tail summed over m
    assert [f.block_count(t) for t in range(1, 5)] == [1, 2, 3, 4]  # one block product per k
    assert f.block_total(20) == 210 and f.total(3) == 37
    h0, c0 = factorize(cell, "h@0"), factorize(cell, "c@0")
    assert [h0.count(t) for t in (1, 2, 3)] == [4, 19, 91] and [c0.count(t) for t in (1, 2, 3)] == [1, 5, 24]
    assert factorize(cell, "W_y").direct == ((Factor("J@t", "y@t"), Factor("y@t", "W_y")),)


def test_narx_counts_by_hand():
    """h_t = tanh(W x_t + Wp x_{t-1} + U h_{t-1} + U2 h_{t-2} + b), y_t = V h_t, J = sum_t J_t.

    h_t reaches h_{t-1} by one edge (U) and h_{t-2} by one (U2, through the delay h'_{t-1}), so the
    paths from h_t down to h_{t-m} number N(m) = N(m-1) + N(m-2), N(0) = N(1) = 1: 1, 1, 2, 3, 5.
    W enters at every step k <= t (one edge from h_k), so J_t has sum_{m<t} N(m) paths to W:
    1, 2, 4, 7, 12; Wp too (x'_{k-1} is a leaf; at k = 1 it is x_0 = 0, a term that is zero).
    h_0 enters h_1 (U) and h_2 (U2, through h'_1 = h_0): J_t has N(t) paths to it, and h_{-1}
    and x_0 are no variables."""
    cell = read(CORPUS / "narx.cell")
    assert differentiable_names(cell) == ("W", "Wp", "U", "U2", "b", "V", "h@0")
    for name in ("W", "Wp", "U", "U2", "b"):
        f = factorize(cell, name)
        assert [f.count(t) for t in range(1, 6)] == [1, 2, 4, 7, 12], name
        assert [f.block_count(t) for t in range(1, 6)] == [1, 2, 3, 4, 5]  # one block product per k
        assert f.total(3) == 1 + 2 + 4 and f.block_total(3) == 6
    h0 = factorize(cell, "h@0")
    assert [h0.count(t) for t in range(1, 6)] == [1, 2, 3, 5, 8] and h0.total(3) == 6
    assert factorize(cell, "V").total(3) == 3
    # the companion matrix: h <- (h, h', x') through U, U2, Wp; h' <- h a copy; x' reads no state
    assert [[len(p) for p in row] for row in h0.step] == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]


def test_m2o_lags_counts_by_hand():
    """h_t = g_t * tanh(W x_t + U h_{t-1}) + tanh(Wq x_{t-2} + U3 h_{t-3}), g_t = sigmoid(G h_{t-1}):
    two edges to h_{t-1} (through g and through U), one to h_{t-3}: N(m) = 2 N(m-1) + N(m-3),
    N(0) = 1: 1, 2, 4, 9, 20.  Many-to-one: J_T alone, with sum_{m<T} N(m) paths to W,
    1, 3, 7, 16, 36; and N(T) to h_0 (h_3 reads it through h_{t-3}): 2, 4, 9, 20, 44."""
    cell = read(CORPUS / "m2o_lags.cell")
    assert [s.name for s in cell.states] == ["h", "_h_lag1", "_h_lag2", "_x_lag0", "_x_lag1"]
    W, h0 = factorize(cell, "W"), factorize(cell, "h@0")
    assert [W.total(T) for T in range(1, 6)] == [1, 3, 7, 16, 36]
    assert [W.block_total(T) for T in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [h0.total(T) for T in range(1, 6)] == [2, 4, 9, 20, 44]


def test_two_states_head_counts_each_path_once():
    # y reads h and c; h reads c: J -> y -> h -> c goes in the h block, J -> y -> c in the c block
    f = factorize(read(CORPUS / "two_states.cell"), "A")
    assert [[(x.num, x.den) for x in p] for p in f.head[0]] == [[("J@t", "y@t"), ("y@t", "h@t")]]
    assert [[(x.num, x.den) for x in p] for p in f.head[1]] == [[("J@t", "y@t"), ("y@t", "c@t")]]


def test_block_expansion_has_one_term_per_k():
    cell = load_builtin("lstm")
    e = block_expansion(cell, 3, factorize(cell, "U_g"))
    assert [len(terms) for terms in e.per_loss] == [1, 2, 3]
    assert [(f.num, f.den) for f in e.per_loss[2][2].factors] == [
        ("J@3", "s@3"),
        ("s@3", "s@2"),
        ("s@2", "s@1"),
        ("s@1", "U_g"),
    ]
    init = block_expansion(cell, 2, factorize(cell, "c@0"))
    assert [(f.num, f.den) for f in init.per_loss[1][0].factors] == [
        ("J@2", "s@2"),
        ("s@2", "s@1"),
        ("s@1", "s@0"),
        ("s@0", "c@0"),
    ]
