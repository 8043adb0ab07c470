"""Variable-length batches: ``loss_and_gradients(..., lengths=)`` of a padded batch equals the sum of
its sequences run alone at their own lengths, ``loss_and_gradients(params, xs[:L_b, b], targets[:L_b, b],
h0[b])``, the initial states' gradients sequence by sequence; whatever the padding holds (NaN here) is
never read.  Every cell of the corpus, full and truncated BPTT; bad lengths are refused by name."""

import functools

import numpy as np
import pytest

from conftest import ALL_CELLS, load_cell
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.report import RTOL_EXACT, load_module, max_rel_error, random_problem
from derive.verify.selfcheck import padded

T, LENGTHS = 5, np.array([5, 1, 3, 2])  # the longest and the shortest (L = T, L = 1) and two between
B = len(LENGTHS)
FAST = ("rnn", "lstm")  # the cells the fast tier runs; the rest of ALL_CELLS is slow


@functools.cache
def module(cell: str, truncate: int | None = None):
    return load_module(module_source(derive(load_cell(cell), 3, truncate)), f"{cell.split('/')[-1]}_lengths")


def problem(m, seed=3, batch=B):
    return random_problem(m, T, {d: 3 + i for i, d in enumerate(m.DIMS)}, seed, batch)


def ragged(m, problem, lengths=LENGTHS, fill=None):
    """The problem with every step past sequence b's length made padding (NaN; -1 for class labels; or
    ``fill``), and ``lengths`` last: the arguments of a call with lengths."""
    params, xs, targets, *initial = problem

    def pad(value):
        if fill is None:
            return padded(value, lengths)
        if isinstance(value, dict):
            return {k: pad(v) for k, v in value.items()}
        out = value.copy()
        for b, length in enumerate(lengths):
            out[length:, b] = fill if out.dtype.kind == "f" else 10**6
        return out

    last = m.LOSS_AT == "last"
    return (params, pad(xs), targets if last else pad(targets), *initial, lengths)


def alone(m, problem, b, length):
    """Sequence b by itself, unbatched, at its own length."""

    def cut(value, per_step):
        if isinstance(value, dict):
            return {k: cut(v, per_step) for k, v in value.items()}
        return value[:length, b] if per_step else value[b]

    params, xs, targets, *initial = problem
    return m.loss_and_gradients(params, cut(xs, True), cut(targets, m.LOSS_AT != "last"), *(s[b] for s in initial))


def sum_alone(m, problem, lengths=LENGTHS):
    runs = [alone(m, problem, b, length) for b, length in enumerate(lengths)]
    grads = {k: np.sum([g[k] for _, g in runs], axis=0) for k in m.PARAMS}
    grads |= {k: np.stack([g[k] for _, g in runs]) for k in m.INITIAL}
    return sum(loss for loss, _ in runs), grads


def assert_agree(got, want):
    assert max_rel_error(got[0], want[0]) <= RTOL_EXACT, ("J", got[0], want[0])
    assert set(got[1]) == set(want[1])
    for name, value in want[1].items():
        assert max_rel_error(got[1][name], value) <= RTOL_EXACT, name


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "K2"])
@pytest.mark.parametrize(
    "cell",
    [pytest.param(c, marks=[] if c in FAST else [pytest.mark.slow]) for c in ALL_CELLS],
    ids=[c.split("/")[-1] for c in ALL_CELLS],
)
def test_a_padded_batch_is_its_sequences_alone_at_their_lengths(cell, truncate):
    m = module(cell, truncate)
    p = problem(m)
    with np.errstate(all="raise"):  # the padding (NaN) is never read into a product
        got = m.loss_and_gradients(*ragged(m, p))
    assert_agree(got, sum_alone(m, p))


@pytest.mark.parametrize("cell", ["corpus/m2o_regress", "corpus/m2o_lstm"], ids=["m2o_regress", "m2o_lstm"])
def test_a_many_to_one_loss_is_at_each_sequences_own_last_step(cell):
    m = module(cell)
    p = problem(m)
    params, xs, targets, *initial = p
    got = m.loss_and_gradients(*ragged(m, p))
    assert_agree(got, sum_alone(m, p))
    # the loss at step T instead (no lengths) is another number: the test above can fail
    assert max_rel_error(m.loss(params, xs, targets, *initial), got[0]) > 1e-3
    # a sequence of length 1: its loss is J_1 of its first step alone
    one = np.ones(B, int)
    assert_agree(m.loss_and_gradients(*ragged(m, p, one)), sum_alone(m, p, one))


@pytest.mark.parametrize("lengths", [[5, 1, 3, 2], [1, 1, 1, 1], [2, 3, 2, 3]], ids=["mixed", "ones", "within-K"])
def test_truncated_bptt_with_lengths_is_each_sequence_alone_truncated(lengths):
    """K = 2: a run for J_s reaches back two steps of its own sequence, never into the steps before it."""
    m = module("lstm", 2)
    p = problem(m)
    lengths = np.array(lengths)
    assert_agree(m.loss_and_gradients(*ragged(m, p, lengths)), sum_alone(m, p, lengths))


def test_lengths_all_t_is_the_call_without():
    m = module("lstm")
    p = problem(m)
    with_all = m.loss_and_gradients(*p, lengths=np.full(B, T))
    without = m.loss_and_gradients(*p)
    assert with_all[0] == without[0]
    for name, value in without[1].items():
        assert np.array_equal(with_all[1][name], value), name


@pytest.mark.parametrize("fill", [np.inf, -np.inf, 1e300, 0.0])
def test_whatever_the_padding_holds_the_result_is_the_same_to_the_bit(fill):
    m = module("corpus/multi_task")  # an input and a real target besides the class labels
    p = problem(m)
    nan = m.loss_and_gradients(*ragged(m, p))
    other = m.loss_and_gradients(*ragged(m, p, fill=fill))
    assert nan[0] == other[0]
    for name, value in nan[1].items():
        assert np.array_equal(other[1][name], value), name


def test_the_callers_arrays_are_not_changed():
    m = module("corpus/multi_task")
    args = ragged(m, problem(m))
    before = [{k: v.copy() for k, v in a.items()} if isinstance(a, dict) else a.copy() for a in args[1:]]
    m.loss_and_gradients(*args)
    for a, b in zip(args[1:], before):
        for x, y in zip(a.values(), b.values()) if isinstance(a, dict) else [(a, b)]:
            assert np.array_equal(x, y, equal_nan=True)


@pytest.mark.parametrize("length", [1, 3, T])
def test_an_unbatched_call_takes_one_integer(length):
    m = module("lstm")
    params, xs, labels, h0, c0 = problem(m, batch=None)
    xs_padded = xs.copy()
    xs_padded[length:] = np.nan
    got = m.loss_and_gradients(params, xs_padded, labels, h0, c0, lengths=length)
    want = m.loss_and_gradients(params, xs[:length], labels[:length], h0, c0)
    assert_agree(got, want)
    assert got[1]["h0"].shape == h0.shape
    assert m.loss(params, xs_padded, labels, h0, c0, np.int32(length)) == got[0]


def test_the_lengths_argument_is_last_and_loss_takes_it_too():
    m = module("lstm")
    p = problem(m)
    params, xs, labels, h0, c0, lengths = ragged(m, p)
    positional = m.loss_and_gradients(params, xs, labels, h0, c0, lengths)
    assert positional[0] == m.loss(params, xs, labels, h0, c0, lengths=lengths)
    assert positional[0] == m.loss_and_gradients(params, xs, labels, h0, c0, lengths=list(lengths))[0]


BAD_LENGTHS = {
    "short": (np.array([5, 1, 3]), "lengths: expected shape (4,) to match xs, got (3,)"),
    "2-d": (np.array([[5, 1, 3, 2]]), "lengths: expected shape (4,) to match xs, got (1, 4)"),
    "floats": (np.array([5.0, 1.0, 3.0, 2.0]), "lengths: expected integers, got dtype float64"),
    "bools": (np.array([True, True, True, True]), "lengths: expected integers, got dtype bool"),
    "zero": (np.array([5, 0, 3, 2]), "lengths: expected values in [1, 5] (T = 5), got values in [0, 5]"),
    "past T": (np.array([6, 1, 3, 2]), "lengths: expected values in [1, 5] (T = 5), got values in [1, 6]"),
    "negative": (np.array([5, -1, 3, 2]), "lengths: expected values in [1, 5] (T = 5), got values in [-1, 5]"),
    "text": (["5", "1", "3", "2"], "lengths: expected an array of real numbers, got dtype <U1"),
}


@pytest.mark.parametrize("name", BAD_LENGTHS, ids=list(BAD_LENGTHS))
def test_bad_lengths_are_refused_by_name(name):
    m = module("lstm")
    lengths, message = BAD_LENGTHS[name]
    with pytest.raises(ValueError) as e:
        m.loss_and_gradients(*problem(m), lengths=lengths)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "lengths, message",
    [
        (np.array([3]), "lengths: expected shape () to match xs, got (1,)"),
        (3.0, "lengths: expected integers, got dtype float64"),
        (True, "lengths: expected integers, got dtype bool"),
        (6, "lengths: expected values in [1, 5] (T = 5), got values in [6, 6]"),
    ],
    ids=["shape-1", "float", "bool", "past-T"],
)
def test_bad_lengths_of_an_unbatched_call_are_refused_by_name(lengths, message):
    m = module("lstm")
    with pytest.raises(ValueError) as e:
        m.loss_and_gradients(*problem(m, batch=None), lengths=lengths)
    assert str(e.value) == message


def test_class_labels_are_checked_where_they_count_only():
    m = module("rnn")
    params, xs, labels, h0 = ragged(m, problem(m))[:4]
    assert (labels == -1).any()  # the padding: no class, and not checked
    m.loss_and_gradients(params, xs, labels, h0, lengths=LENGTHS)
    labels = labels.copy()
    labels[0, 1] = -1  # step 1 of the sequence of length 1: a label that counts
    with pytest.raises(ValueError, match=r"^labels: expected class indices in \[0, 5\), got values in \[-1, "):
        m.loss_and_gradients(params, xs, labels, h0, lengths=LENGTHS)
    with pytest.raises(ValueError, match=r"^labels: expected class indices"):
        m.loss_and_gradients(params, xs, labels, h0)  # without lengths, every step counts
