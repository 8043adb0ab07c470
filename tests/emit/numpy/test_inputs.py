"""Cells with several inputs and targets: the generated module takes ``xs`` and the targets as
dicts by name, checks them like any argument, and its loss is the weighted sum of the losses."""

import functools

import numpy as np
import pytest

from conftest import CORPUS
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.spec.parser import read
from derive.verify.report import RTOL_EXACT, load_module, max_rel_error


@functools.cache
def module():
    return load_module(module_source(derive(read(CORPUS / "multi_task.cell"), 3)), "multi_task_T3")


def problem(T=3, B=None, seed=0):
    m = module()
    params = m.init_params(2, 3, 4, 5, 2, seed=seed)  # n_x, n_a, n_h, n_y, n_r
    rng = np.random.default_rng(seed)
    lead = (T,) if B is None else (T, B)
    xs = {"x": rng.standard_normal(lead + (2,)), "a": rng.standard_normal(lead + (3,))}
    targets = {"label": rng.integers(0, 5, lead), "v": rng.standard_normal(lead + (2,))}
    return params, xs, targets


def test_contract_names_the_inputs_and_targets():
    m = module()
    assert m.DIMS == ("n_x", "n_a", "n_h", "n_y", "n_r")
    assert m.INPUTS == {"x": "n_x", "a": "n_a"}
    assert m.TARGETS == {"label": ("class", "n_y"), "v": ("real", "n_r")}


def test_loss_is_the_weighted_sum_of_both_losses():
    m = module()
    params, xs, targets = problem(T=1)
    P = params
    h = np.tanh(P["W"] @ xs["x"][0] + P["A"] @ xs["a"][0] + P["b"])  # h_0 = 0
    y, q = P["V"] @ h, P["R"] @ h
    ce = -(y[targets["label"][0]] - np.log(np.exp(y).sum()))
    se = 0.5 * np.sum((q - targets["v"][0]) ** 2)
    assert max_rel_error(m.loss(params, xs, targets), ce + 0.5 * se) <= RTOL_EXACT


def test_batch_is_the_sum_of_its_sequences_and_both_paths_agree():
    m = module()
    params, xs, targets = problem(B=3)
    loss, grads = m.loss_and_gradients(params, xs, targets)
    by_def = m.gradients_by_definition(params, xs, targets)[1]
    parts = [
        m.loss_and_gradients(params, {k: v[:, b] for k, v in xs.items()}, {k: v[:, b] for k, v in targets.items()})
        for b in range(3)
    ]
    assert max_rel_error(loss, sum(p[0] for p in parts)) <= RTOL_EXACT
    for name in grads:
        assert max_rel_error(by_def[name], grads[name]) <= RTOL_EXACT
    assert max_rel_error(grads["h0"][1], parts[1][1]["h0"]) <= RTOL_EXACT


BAD = [
    (lambda p, x, y: (p, x["x"], y), r"xs: expected a dict keyed by \('x', 'a'\), got ndarray"),
    (lambda p, x, y: (p, {"x": x["x"]}, y), r"xs: expected the keys \('x', 'a'\); missing \['a'\]"),
    (lambda p, x, y: (p, dict(x, z=1), y), r"unknown \['z'\]"),
    (
        lambda p, x, y: (p, dict(x, a=x["a"][:2]), y),
        r"xs\['a'\]: expected shape \(3, 3\) to match xs\['x'\], got \(2, 3\)",
    ),
    (lambda p, x, y: (p, dict(x, a=x["a"][:, :2]), y), r"xs\['a'\]: last axis is 2, but the parameters have n_a = 3"),
    (lambda p, x, y: (p, x, {"label": y["label"]}), r"targets: expected the keys \('label', 'v'\); missing \['v'\]"),
    (lambda p, x, y: (p, x, dict(y, label=y["label"] + 10)), r"targets\['label'\]: expected class indices in \[0, 5\)"),
    (lambda p, x, y: (p, x, dict(y, v=y["v"][:, :1])), r"targets\['v'\]: expected shape \(3, 2\) to match xs"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_arguments_name_the_input_or_target(make, message):
    with pytest.raises(ValueError, match=message):
        module().loss_and_gradients(*make(*problem()))


def test_float32_inputs_keep_float32():
    params, xs, targets = problem(B=2)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    xs = {k: v.astype(np.float32) for k, v in xs.items()}
    _, grads = module().loss_and_gradients(params, xs, targets)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    doc = module().__doc__
    assert "``xs`` a dict: ``'x'`` (T, n_x) or (T, B, n_x), ``'a'`` (T, n_a) or (T, B, n_a);" in doc
    assert "``targets`` a dict: ``'label'`` (T,) or (T, B) of ints in [0, n_y), ``'v'`` (T, n_r) or (T, B, n_r);" in doc
