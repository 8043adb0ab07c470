"""The benchmark runs and its implementations agree; its timings are not tested (rerun it instead)."""

import json

import numpy as np
import pytest

from derive import cli
from derive.tools import bench
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import RTOL_EXACT, max_rel_error


@pytest.mark.parametrize("shape", [(3, 3, 3, 1), (7, 5, 6, 3)])
def test_expert_numpy_matches_the_reference_loop(shape):
    args = bench.problem(*shape, seed=1)
    loss, grads = bench.expert_numpy(*args)
    want_loss, want = reference_loss_and_gradients(*args)
    assert max_rel_error(loss, want_loss) <= RTOL_EXACT
    for name in want:
        assert max_rel_error(np.reshape(grads[name], np.shape(want[name])), want[name]) <= RTOL_EXACT, name


def test_flop_count_of_the_issue_config_L():
    assert bench.flops(*bench.CONFIGS["L"]) == pytest.approx(1.5e10, rel=0.01)  # the issue's 1.5e10 FLOP


@pytest.mark.slow  # every implementation
def test_bench_runs_every_implementation_and_writes_json(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert cli.main(["bench", "--configs", "S", "--repeats", "3", "--no-peers", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for impl in ("generated", "by-definition", "reference", "min-char-rnn", "expert-numpy"):
        assert f"  {impl} " in out
    data = json.loads(path.read_text())
    (result,) = data["results"]
    assert result["config"] == "S" and result["shape"] == {"V": 3, "H": 3, "T": 3, "B": 1}
    rows = {row["impl"]: row for row in result["rows"]}
    assert rows["generated"]["ratio"] == 1.0
    assert all(row["runs"] >= bench.MIN_REPEATS and row["median_ms"] > 0 for row in rows.values())
    assert data["gemm_gflops"] > 0


def test_peers_are_named_by_the_package_they_need():
    assert set(bench.installed_peers()) <= set(bench.PEERS)
    assert {package for package, _ in bench.PEERS.values()} == {"torch", "jax", "autograd"}


def test_bench_rejects_an_unknown_config(capsys):
    assert cli.main(["bench", "--configs", "S,X"]) == 2
    assert "expected some of S, K, M, L" in capsys.readouterr().err


def test_min_char_rnn_matches_the_reference_loop():
    args = bench.problem(7, 5, 6, 3, seed=2)
    loss, grads = bench.min_char_rnn(*args)
    want_loss, want = reference_loss_and_gradients(*args)
    assert max_rel_error(loss, want_loss) <= RTOL_EXACT
    for name in want:
        assert max_rel_error(grads[name], want[name]) <= RTOL_EXACT, name


@pytest.mark.slow  # derives in subprocesses
def test_scale_rows_time_each_stage_in_a_process_of_its_own(tmp_path):
    from derive.derivation.pipeline import derive
    from derive.ir.cell import load_builtin
    from derive.tools import scale

    path = tmp_path / "scale.json"
    out = scale.main(str(path), cells=("elman",), steps=(2, 4))
    data = json.loads(path.read_text())
    rows = data["derive"]
    assert [(r["cell"], r["steps"]) for r in rows] == [("elman", 2), ("elman", 4)]
    for r in rows:
        d = derive(load_builtin("elman"), r["steps"])
        assert r["terms"] == sum(d.term_count(w) for w in d.factorized)
        assert r["by_definition"] is True and r["written_kb"] > 10 and r["peak_mb"] > 20
        assert all(r[k] > 0 for k in ("derive_s", "module_s", "verify_s", "latex_s"))
    assert rows[1]["written_kb"] > rows[0]["written_kb"]  # more terms written at T = 4
    assert len(data["memory"]) == len(scale.MEMORY_TB)
    assert "derive and emit against T" in out and "fast path memory" in out
