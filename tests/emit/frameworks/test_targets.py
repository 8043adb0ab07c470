"""The PyTorch and JAX modules: equal to the NumPy module in float64 for every built-in and corpus
cell, their frameworks' gradient checkers and autograd agree with the derived backward, and the
contract (shapes, unbatched calls, dtypes, CellModel, refusals) holds."""

import functools

import numpy as np
import pytest

from conftest import ALL_CELLS, load_cell
from derive.derivation.pipeline import derive
from derive.emit.frameworks import scan
from derive.emit.outputs import module_source, target_source
from derive.verify.frameworks import RTOL_TARGET, check_target, failed
from derive.verify.report import SCALE_FLOOR, distinct_sizes, load_module, max_rel_error, random_problem

FAST = ("rnn", "lstm", "corpus/narx", "corpus/m2o_lstm")  # the edit-test loop's: a delay line, many-to-one
CELLS = [c if c in FAST else pytest.param(c, marks=pytest.mark.slow) for c in ALL_CELLS]
STEPS = (1, 4)
BATCH = 3


def _framework(target):
    reason = f"the {target} target's tests need {target} (pip install '.[{target}]')"
    module = pytest.importorskip(target, reason=reason)
    if target == "jax":
        module.config.update("jax_enable_x64", True)
    return module


@functools.cache
def _modules(cell, target):
    d = derive(load_cell(cell), 3)
    name = cell.replace("/", "_")
    return load_module(module_source(d), name), load_module(target_source(d, target), f"{name}_{target}")


def _convert(target, value):
    fw = _framework(target)
    convert = fw.as_tensor if target == "torch" else fw.numpy.asarray
    if isinstance(value, dict):
        return {k: convert(np.asarray(v)) for k, v in value.items()}
    return convert(np.asarray(value))


def _errors(got, want):
    loss, grads = got
    errors = {"loss": max_rel_error(np.asarray(loss), np.asarray(want[0]), SCALE_FLOOR)}
    assert set(grads) == set(want[1])
    for k, g in want[1].items():
        assert np.shape(grads[k]) == np.shape(g), k
        errors[k] = max_rel_error(np.asarray(grads[k]), g, SCALE_FLOOR)
    return errors


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("cell", CELLS)
def test_a_target_equals_the_numpy_module(cell, target):
    _framework(target)
    numpy_module, module = _modules(cell, target)
    for steps in STEPS:
        problem = random_problem(numpy_module, steps, distinct_sizes(numpy_module, 4), seed=steps, batch=BATCH)
        want = numpy_module.loss_and_gradients(*problem)
        got = module.loss_and_gradients(*(_convert(target, v) for v in problem))
        errors = _errors(got, want)
        assert max(errors.values()) <= RTOL_TARGET, (steps, errors)


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("cell", ["lstm", pytest.param("corpus/narx", marks=pytest.mark.slow)])
def test_an_unbatched_call_is_one_sequence(cell, target):
    _framework(target)
    numpy_module, module = _modules(cell, target)
    problem = random_problem(numpy_module, 3, distinct_sizes(numpy_module, 4), seed=5)  # no batch axis
    got = module.loss_and_gradients(*(_convert(target, v) for v in problem))
    errors = _errors(got, numpy_module.loss_and_gradients(*problem))
    assert max(errors.values()) <= RTOL_TARGET, errors


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("cell", ["lstm", *(pytest.param(c, marks=pytest.mark.slow) for c in ("gru", "corpus/narx"))])
def test_the_frameworks_own_checkers_pass(cell, target):
    """gradcheck / check_grads on the derived backward, autograd of the plain forward, jit: every row."""
    _framework(target)
    numpy_module, _ = _modules(cell, target)
    d = derive(load_cell(cell), 3)
    checks = check_target(target, target_source(d, target), numpy_module)
    assert failed(checks) is None
    assert {c.name for c in checks} >= {"equal to the NumPy module"}
    assert (
        len({c.name for c in checks}) == 7
    )  # torch: with lengths, through Loss, autograd, gradcheck; jax: grad, jit, autograd, check_grads


def test_a_wrong_backward_is_caught_by_the_check():
    """The check is not vacuous: a torch module whose backward drops a share of dJ/dh_{t-1} fails it."""
    _framework("torch")
    numpy_module, _ = _modules("rnn", "torch")
    d = derive(load_cell("rnn"), 3)
    source = target_source(d, "torch")
    wrong = source.replace("dh_next = dz @ W_hh", "dh_next = 0.5 * (dz @ W_hh)")
    assert wrong != source
    verdict = failed(check_target("torch", wrong, numpy_module))
    assert verdict is not None and verdict.startswith("equal to the NumPy module at T = ")


@pytest.mark.parametrize(
    "target, line, wrong",
    [
        ("torch", "tuple(g * d for d in weight_grads)", "tuple(0.5 * g * d for d in weight_grads)"),
        ("jax", "tuple(g * d for d in grads[: len(weights)])", "tuple(0.5 * g * d for d in grads[: len(weights)])"),
    ],
)
def test_a_truncated_modules_own_backward_is_checked(target, line, wrong):
    """A truncated module's loss_and_gradients can be right while what training calls (Loss's backward,
    jax.grad of the custom_vjp) is wrong: the check runs that too (autograd cannot: it is the full gradient)."""
    _framework(target)
    d = derive(load_cell("rnn"), 3, truncate=2)
    numpy_module = load_module(module_source(d), "rnn_T3_K2")
    source = target_source(d, target)
    assert failed(check_target(target, source, numpy_module)) is None
    broken = source.replace(line, wrong)
    assert broken != source
    verdict = failed(check_target(target, broken, numpy_module))
    assert verdict is not None and verdict.startswith(("torch autograd through Loss", "jax.grad of the custom_vjp"))


def test_the_torch_model_trains_through_the_derived_backward():
    torch = _framework("torch")
    numpy_module, module = _modules("lstm", "torch")
    model = module.CellModel(4, 5, 6, seed=1, dtype=torch.float64)
    assert [name for name, _ in model.named_parameters()] == list(module.PARAMS)
    problem = random_problem(numpy_module, 4, {"n_x": 4, "n_h": 5, "n_y": 6}, seed=2, batch=BATCH)
    params = {name: p.detach().numpy() for name, p in model.named_parameters()}
    want = numpy_module.loss_and_gradients(params, *problem[1:])
    loss = model(*(_convert("torch", v) for v in problem[1:]))
    loss.backward()
    assert abs(float(loss.detach()) - want[0]) <= RTOL_TARGET * abs(want[0])
    for name, p in model.named_parameters():
        assert max_rel_error(p.grad.numpy(), want[1][name], SCALE_FLOOR) <= RTOL_TARGET, name


def test_a_torch_module_keeps_the_inputs_dtype():
    torch = _framework("torch")
    numpy_module, module = _modules("rnn", "torch")
    problem = random_problem(numpy_module, 3, distinct_sizes(numpy_module, 4), seed=3, batch=2)
    params, xs, targets, h0 = (_convert("torch", v) for v in problem)
    loss, grads = module.loss_and_gradients({k: v.float() for k, v in params.items()}, xs.float(), targets, h0.float())
    assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads.values())


def test_torch_refuses_to_differentiate_the_inputs():
    """The derived backward has no dJ/dx: asking for it is an error, not a silent None."""
    _framework("torch")
    numpy_module, module = _modules("rnn", "torch")
    params, xs, targets, h0 = (_convert("torch", v) for v in random_problem(numpy_module, 3, (4, 5, 6), batch=2))
    xs.requires_grad_()
    with pytest.raises(RuntimeError, match="no gradient for the inputs"):
        module.loss(params, xs, targets, h0).backward()


def test_jax_gives_nan_not_zero_for_the_inputs_gradient():
    jax = _framework("jax")
    numpy_module, module = _modules("rnn", "jax")
    params, xs, targets, h0 = (_convert("jax", v) for v in random_problem(numpy_module, 3, (4, 5, 6), batch=2))
    dxs = jax.grad(lambda v: module.loss(params, v, targets, h0))(xs)
    assert np.isnan(np.asarray(dxs)).all()


def test_jax_vmaps_over_sequences():
    jax = _framework("jax")
    numpy_module, module = _modules("lstm", "jax")
    params, xs, labels, h0, c0 = random_problem(numpy_module, 4, (4, 5, 6), seed=4, batch=BATCH)
    arrays = (_convert("jax", v) for v in (params, xs, labels, h0, c0))
    per_sequence = jax.vmap(module.loss, in_axes=(None, 1, 1, 0, 0))(*arrays)
    for b in range(BATCH):
        want = numpy_module.loss_and_gradients(params, xs[:, b], labels[:, b], h0[b], c0[b])[0]
        assert abs(float(per_sequence[b]) - want) <= RTOL_TARGET * abs(want)


def test_emit_target_writes_the_checked_module(bptt, tmp_path):
    _framework("torch")
    result = bptt("emit", "rnn", "--target", "torch", "--out", tmp_path)
    assert result.code == 0, result.err
    path = tmp_path / "rnn_T3_torch.py"
    assert result.wrote == {f"wrote {path}"}
    first = path.read_text(encoding="utf-8").splitlines()[:3]
    assert first[0] == "# DO NOT EDIT: generated by bptt-derive from templates/torch_module.py.j2"
    assert first[2] == "# regenerate with: bptt emit --cell rnn --steps 3 --target torch --out <this folder>"


def test_a_missing_framework_is_one_line(bptt, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("no jax here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jax)
    monkeypatch.setattr("importlib.import_module", lambda name: no_jax(name))
    result = bptt("emit", "rnn", "--target", "jax", "--out", tmp_path)
    assert result.code == 2
    assert result.err == "bptt: error: --target jax needs JAX: pip install 'bptt-derive[jax]'\n"
    assert not list(tmp_path.iterdir())


def test_a_truncated_target_is_checked_against_the_numpy_modules_truncation(bptt, tmp_path):
    """Autograd of the forward is the full gradient, so a truncated module is held to the NumPy module's
    truncated run (itself checked against SymPy), to its own contract and to its Loss (what training calls),
    not to autograd of the forward."""
    _framework("torch")
    result = bptt("verify", "rnn", "--target", "torch", "--truncate", "2", "--steps", "4")
    assert result.code == 0, result.err
    names = {line.split("  T = ")[0].strip() for line in result.lines if "  T = " in line}
    assert names == {
        "equal to the NumPy module",
        "its sequences one at a time",
        "its float64 self in float32",
        "with lengths, equal to the NumPy module",
        "torch autograd through Loss",
    }
    assert bptt("emit", "rnn", "--target", "torch", "--truncate", "2", "--out", tmp_path).code == 0
    assert (tmp_path / "rnn_T3_K2_torch.py").read_text(encoding="utf-8").count("TRUNCATE = 2") == 1


def test_a_failed_verify_target_is_a_mismatch_not_a_refused_write(bptt, monkeypatch):
    """bptt verify --target writes nothing whatever the checks say: a failed check is its row and a
    MISMATCH line, exit 1, as a failed NumPy verification is (emit says it wrote nothing)."""
    _framework("torch")
    from derive.cli import job

    real = job.target_source

    def wrong(derivation, target):
        return real(derivation, target).replace("dh_next = dz @ W_hh", "dh_next = 0.5 * (dz @ W_hh)")

    monkeypatch.setattr(job, "target_source", wrong)
    result = bptt("verify", "rnn", "--target", "torch")
    assert result.code == 1
    assert result.lines[-1].startswith("MISMATCH equal to the NumPy module at T = ")
    assert "nothing was written" not in result.err


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_an_empty_batch_is_refused_in_one_line(target):
    """B = 0 sequences: a ValueError naming xs, as the NumPy module says it (it was the framework's reshape
    error)."""
    _framework(target)
    _, module = _modules("rnn", target)
    params = _convert(target, {k: np.ones(_shape(module, k)) for k in module.PARAMS})
    xs, labels = _convert(target, np.zeros((3, 0, 3))), _convert(target, np.zeros((3, 0), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"^xs: expected shape \(T, n\) or \(T, B, n\) with T >= 1 and B >= 1, got \(3, 0, 3\)$"
    ):
        module.loss_and_gradients(params, xs, labels)


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize(
    "keys, message",
    [
        (("x",), r"^xs: expected the keys \('x', 'a'\); missing \['a'\]$"),
        (("x", "a", "z"), r"^xs: expected the keys \('x', 'a'\); unknown \['z'\]$"),
        (None, r"^xs: expected a dict keyed by \('x', 'a'\), got "),
    ],
)
def test_several_inputs_are_named_as_the_numpy_module_names_them(target, keys, message):
    """A cell with several inputs takes xs as a dict: a missing, unknown or absent key is said as the
    NumPy module says it (one helper, _keyed, in the three modules)."""
    _framework(target)
    numpy_module, module = _modules("corpus/multi_task", target)
    params, xs, targets, *_ = random_problem(numpy_module, 3, distinct_sizes(numpy_module, 3), seed=1, batch=2)
    given = xs["x"] if keys is None else {k: xs.get(k, xs["x"]) for k in keys}
    with pytest.raises(ValueError, match=message):
        module.loss_and_gradients(_convert(target, params), _convert(target, given), _convert(target, targets))
    with pytest.raises(ValueError, match=message):
        numpy_module.loss_and_gradients(params, given, targets)


def _shape(module, name):
    return (3,) * len(module.SHAPES[name])  # rnn: n_x = n_h = n_y = 3


def test_verify_target_prints_every_check(bptt):
    _framework("jax")
    result = bptt("verify", "rnn", "--target", "jax")
    assert result.code == 0, result.err
    rows = result.lines[result.lines.index("verification of the JAX module: max relative error, float64") + 1 :]
    names = [row.split("  T = ")[0].strip() for row in rows[:-1]]
    assert names == [
        "equal to the NumPy module",
        "its sequences one at a time",
        "its float64 self in float32",
        "jax.grad of the custom_vjp",
        "jax.jit(jax.grad) of the custom_vjp",
        "jax.grad of autograd_loss",
        "jax.test_util.check_grads of the custom_vjp",
    ]
    assert all(row.endswith("  ok") for row in rows[:-1])
    assert rows[-1] == "all checks pass"


@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", ["lstm", "corpus/narx", "corpus/m2o_lstm"])
def test_a_second_backward_of_one_graph_gives_the_same_gradients(cell, lengths):
    """``loss.backward(retain_graph=True)`` twice: the derived backward writes its loop's outputs into
    tensors it made itself, never into the forward's saved ones (a second backward reads them again), so
    the second .grad adds the same gradients again, equal to the NumPy module's."""
    torch = _framework("torch")
    numpy_module, module = _modules(cell, "torch")
    params, xs, targets, *initial = random_problem(numpy_module, 4, distinct_sizes(numpy_module, 4), seed=5, batch=3)
    _, want = numpy_module.loss_and_gradients(params, xs, targets, *initial, lengths=lengths)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    args = (_convert("torch", xs), _convert("torch", targets), *(_convert("torch", v) for v in initial))
    loss = module.loss(leaves, *args, lengths=lengths)
    loss.backward(retain_graph=True)
    first = {k: v.grad.clone() for k, v in leaves.items()}
    loss.backward()
    for name, leaf in leaves.items():
        assert max_rel_error(first[name].numpy(), want[name], SCALE_FLOOR) <= RTOL_TARGET, name
        assert torch.equal(leaf.grad, 2 * first[name]), name


def _same(a, b) -> bool:
    torch = _framework("torch")
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_the_torch_module_writes_into_none_of_its_arguments(cell, lengths):
    """The loops write their outputs into tensors the module made (a gate's known part W x + b, a delta's
    rows), never into the caller's: the inputs (a gate may read x itself), targets, initial states and
    parameters are bit for bit as given, after loss_and_gradients and after loss(...).backward()."""
    torch = _framework("torch")
    numpy_module, module = _modules(cell, "torch")
    params, xs, targets, *initial = random_problem(numpy_module, 4, distinct_sizes(numpy_module, 4), seed=7, batch=3)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    args = (_convert("torch", xs), _convert("torch", targets), *(_convert("torch", v) for v in initial))
    kept = ({k: v.detach().clone() for k, v in P.items()}, *(_clone(a) for a in args))
    module.loss_and_gradients(P, *args, lengths=lengths)
    module.loss(P, *args, lengths=lengths).backward()
    assert all(_same(a, b) for a, b in zip(({k: v.detach() for k, v in P.items()}, *args), kept))


@pytest.mark.parametrize(
    "code, fresh",
    [
        ("a + b", True),
        ("-a", True),
        ("torch.tanh(a)", True),
        ("_where(mask, a, 0)", True),
        ("a", False),
        ("a[1:]", False),
        ("a.T", False),
        ("a.reshape(T, B, -1)", False),
        ("torch.reshape(a, (2, 3))", False),  # a view: a torch call is not new for being torch's
        ("torch.narrow(a, 0, 0, 1)", False),
    ],
)
def test_only_a_new_tensor_may_host_a_loops_outputs(code, fresh):
    """The torch module writes a loop's outputs into a tensor only where the line that made it makes a new
    one: arithmetic, or a call named as one that computes (FRESH_CALLS), never a view's."""
    assert scan._fresh(code) is fresh


def _clone(value):
    return {k: v.clone() for k, v in value.items()} if isinstance(value, dict) else value.clone()


def test_the_derived_backward_refuses_to_be_differentiated_again():
    """A second derivative through Loss would differentiate nothing of the derived backward: refused."""
    torch = _framework("torch")
    numpy_module, module = _modules("rnn", "torch")
    params, xs, targets, h0 = (_convert("torch", v) for v in random_problem(numpy_module, 3, (4, 5, 6), batch=2))
    w = params["W_hh"].requires_grad_()
    (g,) = torch.autograd.grad(module.loss(params, xs, targets, h0), w)  # once: fine
    assert g.shape == w.shape
    with pytest.raises(RuntimeError, match="cannot be differentiated again"):
        torch.autograd.grad(module.loss(params, xs, targets, h0), w, create_graph=True)


@pytest.mark.parametrize("label", [-1, 6])
def test_jax_gives_nan_for_a_label_out_of_range_under_jit(label):
    """Under jit a label cannot be refused (it is a tracer): the loss and the gradient are NaN, where
    take_along_axis would have read class n - 1 for -1 and one_hot would have given a finite gradient."""
    jax = _framework("jax")
    numpy_module, module = _modules("rnn", "jax")
    params, xs, labels, h0 = random_problem(numpy_module, 3, (4, 5, 6), batch=2)
    labels = labels.copy()
    labels[1, 0] = label
    args = [_convert("jax", v) for v in (params, xs, labels, h0)]
    loss, grads = jax.jit(jax.value_and_grad(module.loss))(*args)
    assert np.isnan(float(loss)) and np.isnan(np.asarray(grads["W_hy"])).any()
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 6\)"):
        module.loss(*args)  # outside jit it is refused
