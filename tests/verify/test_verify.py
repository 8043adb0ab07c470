"""Stage 8: the verifier reports real errors, and the CLI turns a mismatch into exit status 1."""

import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import derivation, generated, module_source
from derive import cli
from derive.cli import job
from derive.emit import outputs
from derive.ir.cell import seed_rnn
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import RTOL_EXACT, SCALE_FLOOR, format_table, max_rel_error, verify

HYPOTHESIS_RTOL = 1e-9  # longer sequences and wider layers than the fixed checks: a little more rounding


def test_max_rel_error_is_relative_to_the_largest_entry():
    assert max_rel_error(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == 0.5
    assert max_rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert max_rel_error(np.ones(2) * 1e-9, np.zeros(2)) == 1e-9 / SCALE_FLOOR
    assert max_rel_error(np.ones(2), np.ones(3)) == float("inf")


def _broken(module, wrong):
    """A copy of a generated module whose gradients go through ``wrong``."""
    copy = types.ModuleType("broken")
    copy.__dict__.update(module.__dict__)

    def loss_and_gradients(*args):
        loss, grads = module.loss_and_gradients(*args)
        return loss, wrong(grads)

    copy.loss_and_gradients = loss_and_gradients
    return copy


def test_report_flags_a_wrong_gradient_in_every_check():
    module = _broken(generated(2), lambda g: dict(g, W_hh=g["W_hh"].T))
    report = verify(seed_rnn(), module, 2)
    assert not report.passed
    flagged = {f.split(":")[0] for f in report.failures() if "W_hh" in f}
    assert flagged == {
        "loss_and_gradients vs reference",
        "loss_and_gradients vs finite differences",
        "loss_and_gradients vs sympy",
    }
    assert all("W_hh" in f for f in report.failures())


def test_report_passes_the_generated_module():
    report = verify(seed_rnn(), generated(2), 2)
    assert report.passed, report.failures()
    assert report.rows == ("loss", "W_xh", "W_hh", "W_hy", "h0")
    assert max(report.errors[("loss_and_gradients", "reference")].values()) <= RTOL_EXACT


def test_table_layout():
    table = format_table(verify(seed_rnn(), generated(1), 1)).splitlines()
    assert table[0].split() == ["loss_and_gradients", "gradients_by_definition"]
    assert table[1].split() == ["reference", "finite", "diff", "SymPy"] * 2
    assert [line.split()[0] for line in table[2:]] == ["loss", "W_xh", "W_hh", "W_hy", "h0", "tolerance"]


def _wrong_source(monkeypatch):
    """The generated module with dW_hh's outer product taken with h_t for h_{t-1}, for every command."""
    right_source = outputs.module_source

    def wrong_source(derivation):
        right = right_source(derivation)
        wrong = right.replace("dW_hh = dz_rows.T @ h_rows_prev", "dW_hh = dz_rows.T @ h_rows")
        assert wrong != right
        return wrong

    monkeypatch.setattr(outputs, "module_source", wrong_source)
    monkeypatch.setattr(job, "module_source", wrong_source)


def test_cli_exits_1_on_a_mismatch(monkeypatch, capsys):
    _wrong_source(monkeypatch)
    assert derivation(2)  # warm the cache outside the timed part
    assert cli.main(["verify", "--steps", "2"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH loss_and_gradients vs reference: W_hh" in out
    assert "all checks pass" not in out


def test_a_mismatch_writes_nothing(monkeypatch, capsys, tmp_path):
    """The documents report the verification; where it fails, none is written (nor the module)."""

    _wrong_source(monkeypatch)
    assert cli.main(["derive", "--steps", "2", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH loss_and_gradients vs reference: W_hh" in out and "wrote" not in out
    assert not (tmp_path / "out").exists()


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 12),
    B=st.one_of(st.none(), st.integers(1, 4)),
    sizes=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(2, 6)),
    seed=st.integers(0, 2**16),
)
def test_fast_path_matches_the_reference_for_any_shape(T, B, sizes, seed):
    n_x, n_h, n_y = sizes
    module = generated(3)
    rng = np.random.default_rng(seed)
    params = module.init_params(n_x, n_h, n_y, seed=seed)
    lead = (T,) if B is None else (T, B)
    xs, labels = rng.standard_normal(lead + (n_x,)), rng.integers(0, n_y, lead)
    h0 = rng.standard_normal(lead[1:] + (n_h,))
    loss, grads = module.loss_and_gradients(params, xs, labels, h0)
    ref_loss, ref_grads = reference_loss_and_gradients(params, xs, labels, h0)
    assert max_rel_error(loss, ref_loss) <= HYPOTHESIS_RTOL
    for name, g in ref_grads.items():
        assert grads[name].shape == g.shape
        assert max_rel_error(grads[name], g) <= HYPOTHESIS_RTOL


@pytest.mark.parametrize("T", [1, 2])
def test_generated_source_is_valid_python_with_the_header(T):
    source = module_source(T)
    compile(source, f"rnn_T{T}.py", "exec")
    assert source.startswith("# DO NOT EDIT: generated by bptt-derive from templates/module.py.j2\n")
