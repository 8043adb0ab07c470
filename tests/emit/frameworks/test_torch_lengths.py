"""Variable-length batches in the PyTorch module: ``loss``, ``autograd_loss``, ``loss_and_gradients`` and
``CellModel.forward`` with ``lengths=`` equal the NumPy module's lengths path (same derivation, same
lengths) in float64, the padding (NaN; -1 for class labels) never read; full and truncated BPTT,
many-to-many and many-to-one; bad lengths are refused with the NumPy module's messages."""

import functools

import numpy as np
import pytest

from conftest import ALL_CELLS, load_cell
from derive.derivation.pipeline import derive
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
from derive.emit.outputs import module_source
from derive.emit.render import render
from derive.verify.report import RTOL_EXACT, load_module, max_rel_error, random_problem
from derive.verify.selfcheck import padded

torch = pytest.importorskip("torch")

T, LENGTHS = 5, np.array([5, 1, 3, 2])  # the longest and the shortest (L = T, L = 1) and two between
B = len(LENGTHS)
FAST = ("lstm", "corpus/m2o_lstm", "corpus/narx", "corpus/loss_param")  # the fast tier; the rest is slow
CELLS = [pytest.param(c, marks=[] if c in FAST else [pytest.mark.slow], id=c.split("/")[-1]) for c in ALL_CELLS]


@functools.cache
def modules(cell: str, truncate: int | None = None):
    """(the NumPy module, the PyTorch module) of one derivation."""
    d = derive(load_cell(cell), 3, truncate)
    stem = f"{cell.split('/')[-1]}_K{truncate}_lengths"
    source = render(TEMPLATES["torch"], module_context(d, FRAMEWORKS["torch"], "test"))
    return load_module(module_source(d), f"{stem}_numpy"), load_module(source, f"{stem}_torch")


def ragged(m, lengths=LENGTHS, seed=3):
    """A problem with every step past sequence b's length made padding, and ``lengths`` last."""
    params, xs, targets, *initial = random_problem(m, T, {d: 3 + i for i, d in enumerate(m.DIMS)}, seed, B)
    last = m.LOSS_AT == "last"
    return (params, padded(xs, lengths), targets if last else padded(targets, lengths), *initial, lengths)


def assert_equal(got, want):
    assert set(got[1]) == set(want[1])
    assert np.isfinite(float(got[0])), "the padding was read"
    assert max_rel_error(np.asarray(got[0]), want[0]) <= RTOL_EXACT, ("J", float(got[0]), want[0])
    for name, value in want[1].items():
        assert max_rel_error(np.asarray(got[1][name]), value) <= RTOL_EXACT, name


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "K2"])
@pytest.mark.parametrize("cell", CELLS)
def test_loss_and_gradients_with_lengths_equal_the_numpy_modules(cell, truncate):
    numpy_module, m = modules(cell, truncate)
    args = ragged(numpy_module)
    assert_equal(m.loss_and_gradients(*args), numpy_module.loss_and_gradients(*args))


@pytest.mark.parametrize("lengths", [[5, 1, 3, 2], [1, 1, 1, 1], [2, 3, 2, 3]], ids=["mixed", "ones", "within-K"])
@pytest.mark.parametrize("truncate", [None, 1, 2], ids=["full", "K1", "K2"])
@pytest.mark.parametrize("cell", ["lstm", "corpus/m2o_lstm"], ids=["lstm", "m2o_lstm"])
def test_lengths_at_the_edges(cell, truncate, lengths):
    """All of length 1, lengths within K of each other, and the mixed batch, full and truncated."""
    numpy_module, m = modules(cell, truncate)
    args = ragged(numpy_module, np.array(lengths))
    assert_equal(m.loss_and_gradients(*args), numpy_module.loss_and_gradients(*args))


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "K2"])
@pytest.mark.parametrize("cell", ["gru", "corpus/m2o_regress"], ids=["gru", "m2o_regress"])
def test_the_function_the_model_and_autograd_with_lengths(cell, truncate):
    """``loss(...).backward()`` and ``CellModel(...)(...).backward()`` fill .grad with the NumPy module's
    gradients; so does autograd through ``autograd_loss`` (full BPTT: it is not truncated), finite
    despite the NaN padding."""
    numpy_module, m = modules(cell, truncate)
    params, xs, targets, *initial, lengths = ragged(numpy_module)
    _, want = numpy_module.loss_and_gradients(params, xs, targets, *initial, lengths)
    for f in (m.loss, m.autograd_loss) if truncate is None else (m.loss,):
        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        f(leaves, xs, targets, *initial, lengths=torch.tensor(lengths)).backward()
        for name in m.PARAMS:
            assert max_rel_error(leaves[name].grad.numpy(), want[name]) <= RTOL_EXACT, (f.__name__, name)
    model = m.CellModel(*(3 + i for i, _ in enumerate(m.DIMS)), dtype=torch.float64)
    for name, value in params.items():
        getattr(model, name).data = torch.tensor(value)
    model(xs, targets, *initial, lengths=lengths).backward()
    for name in m.PARAMS:
        assert max_rel_error(getattr(model, name).grad.numpy(), want[name]) <= RTOL_EXACT, name


def test_lengths_all_t_is_the_call_without():
    numpy_module, m = modules("lstm")
    params, xs, targets, *initial, _ = ragged(numpy_module, np.full(B, T))
    with_all = m.loss_and_gradients(params, xs, targets, *initial, lengths=np.full(B, T))
    without = m.loss_and_gradients(params, xs, targets, *initial)
    assert torch.equal(with_all[0], without[0])
    for name, value in without[1].items():
        assert torch.equal(with_all[1][name], value), name


def test_the_padding_changes_nothing_and_lengths_change_the_loss():
    """The test above can fail: other lengths are another loss; other padding is the same one."""
    numpy_module, m = modules("lstm")
    args = ragged(numpy_module)
    nan = m.loss_and_gradients(*args)[0]
    params, xs, targets, *initial, lengths = args
    filled = m.loss_and_gradients(params, np.nan_to_num(xs, nan=1e6), targets, *initial, lengths)[0]
    assert float(nan) == float(filled)
    assert max_rel_error(np.asarray(m.loss_and_gradients(*ragged(numpy_module, np.full(B, 2)))[0]), float(nan)) > 1e-3


@pytest.mark.parametrize(
    "lengths",
    [[5, 1, 3], [5, 1, 3, 2.0], [0, 1, 3, 2], [6, 1, 3, 2], ["a"] * 4],
    ids=["shape", "floats", "zero", "above-T", "strings"],
)
def test_bad_lengths_are_refused_with_the_numpy_modules_messages(lengths):
    lengths = np.array(lengths)
    numpy_module, m = modules("lstm")
    params, xs, targets, *initial, _ = ragged(numpy_module)
    with pytest.raises(ValueError) as want:
        numpy_module.loss_and_gradients(params, xs, targets, *initial, lengths=lengths)
    with pytest.raises(ValueError) as got:
        m.loss_and_gradients(params, xs, targets, *initial, lengths=lengths)
    assert str(got.value) == str(want.value)
    assert str(got.value).startswith("lengths: ")
