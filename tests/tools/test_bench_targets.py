"""bptt bench --target torch|jax: every implementation agrees with the emitted module before it is timed,
and the tables say what they measured; the timings themselves are not tested (rerun the bench)."""

import dataclasses

import pytest

from derive import cli
from derive.tools.bench import floor, flops, plain, targets
from derive.tools.bench.measure import agreement
from derive.tools.bench.problem import make_problem
from derive.tools.bench.run import answer
from derive.verify.report import RTOL_EXACT, load_module

SHAPE = targets.SIZES["S"]  # (7, 5, 6, 3): each size its own, so that a transposition shows


def _module(model: str, target: str):
    return load_module(targets.framework_source(model, target), f"{model}_{target}")


def _problem(model: str, dtype: str = "float64"):
    return make_problem(targets.cell_for(model), *SHAPE, dtype, seed=1)


def _emitted_answer(module, p):
    """The emitted torch module's own loss_and_gradients, in NumPy."""
    import torch

    value, grads = module.loss_and_gradients(
        {k: torch.from_numpy(v) for k, v in p.params.items()},
        torch.from_numpy(p.xs),
        torch.from_numpy(p.labels),
        **{k: torch.from_numpy(v) for k, v in p.initial.items()},
    )
    return float(value), {k: g.numpy() for k, g in grads.items()}


@pytest.mark.parametrize("model", targets.MODELS)
def test_every_torch_implementation_agrees_with_the_emitted_module(model):
    pytest.importorskip("torch")
    module, p = _module(model, "torch"), _problem(model)
    want = _emitted_answer(module, p)
    assert agreement(want, answer(targets.numpy_module(model), p))[0] <= RTOL_EXACT  # the NumPy module's too
    makers = targets.makers_for("torch", model, module)
    assert set(makers) == {"emitted", "emitted-Loss", "autograd_loss"} | set(targets.MODELS[model].torch_peers)
    for name, make in makers.items():
        error, worst = agreement(make(p)(), want)
        assert error <= RTOL_EXACT, f"{name}: {worst}"


@pytest.mark.parametrize("model", targets.MODELS)
def test_every_jax_implementation_agrees_with_the_numpy_module(model):
    pytest.importorskip("jax")
    module, p = _module(model, "jax"), _problem(model)
    want = answer(targets.numpy_module(model), p)
    for name, make in targets.makers_for("jax", model, module).items():
        call = make(p)
        error, worst = agreement(call(), want)
        assert error <= RTOL_EXACT, f"{name}: {worst}"
        assert call.memory_bytes is None or call.memory_bytes > 0


def test_the_custom_cells_have_a_plain_loop_and_the_built_ins_torch_own_layer():
    assert set(plain.STEPS) == set(targets.CUSTOM) and set(targets.CUSTOM) < set(targets.MODELS)
    peers = {m: set(t.torch_peers) for m, t in targets.MODELS.items()}
    assert peers["lstm"] == {"torch.nn.LSTM"} and peers["gru-torch"] == {"torch.nn.GRU"}
    assert all(peers[m] == {"plain-autograd"} for m in targets.CUSTOM)


def test_a_plain_loop_that_is_wrong_is_not_timed(monkeypatch):
    pytest.importorskip("torch")

    def wrong_step(P, x, states):  # IndRNN with its bias's sign flipped
        import torch

        return (torch.tanh(x @ P["W"].T + P["u"] * states[0] - P["b"]),)

    monkeypatch.setitem(plain.STEPS, "indrnn", wrong_step)
    broken = dataclasses.replace(
        targets.MODELS["indrnn"], torch_peers={"plain-autograd": plain.plain_autograd("indrnn")}
    )
    monkeypatch.setitem(targets.MODELS, "indrnn", broken)
    result = targets.run_config("torch", targets.CONFIGS["indrnn-S"], "float64", 3, memory=False)
    assert "plain-autograd" not in {row.impl for row in result.rows}
    assert result.skipped["plain-autograd"].startswith("disagrees with generated on ")


def test_a_torch_table_names_its_command_columns_and_targets():
    pytest.importorskip("torch")
    result = targets.run_config("torch", targets.CONFIGS["mgu-S"], "float32", 3, memory=False)
    rows = {row.impl: row for row in result.rows}
    assert set(rows) == {"emitted", "emitted-Loss", "autograd_loss", "plain-autograd"}, result.skipped
    assert rows["emitted"].ratio == 1.0 and all(r.runs >= 3 and r.peak_mb is None for r in rows.values())
    lines = targets.format_result(result)
    assert lines[0] == "\ntorch, mgu-S: mgu (V=7, H=5, T=6, B=3), float32"
    assert lines[1] == "  command: bptt bench --target torch --configs mgu-S --dtype float32 --repeats 3"
    header = next(line for line in lines if line.lstrip().startswith("implementation"))
    assert header.split() == ["implementation", "median", "runs", "vs", "emitted", "peak", "error"]
    verdicts = [line.strip().split(":")[0] for line in lines if "target (" in line]
    assert verdicts == [
        "target (>= 1.5x faster than plain-autograd, lower peak)",
        "target (>= 1.5x faster than autograd_loss, lower peak)",
    ]


def _result(target, model, dtype, rows):
    result = targets.TargetResult(target, f"{model}-M", model, dtype, {}, "cmd", "how")
    result.rows = [targets.TargetRow(impl, ms, 3, 1.0, mb, 0.0) for impl, ms, mb in rows]
    return result


def test_the_verdicts_say_met_or_missed_with_the_figures():
    custom = _result(
        "torch", "mgu", "float64", [("emitted", 10.0, 2.0), ("plain-autograd", 20.0, 3.0), ("autograd_loss", 12.0, 1.0)]
    )
    assert targets.verdicts(custom) == [
        "target (>= 1.5x faster than plain-autograd, lower peak): met, 2.00x, peak 2.0 vs 3.0 MB",
        "target (>= 1.5x faster than autograd_loss, lower peak): MISSED, 1.20x, peak 2.0 vs 1.0 MB",
    ]
    lstm = _result("torch", "lstm", "float32", [("emitted", 13.0, None), ("torch.nn.LSTM", 10.0, None)])
    assert targets.verdicts(lstm) == ["target (<= 1.2x torch.nn.LSTM's time): MISSED, 1.30x"]
    assert targets.verdicts(dataclasses.replace(lstm, dtype="float64")) == []  # the target is float32's
    jax = _result("jax", "lstm", "float64", [("emitted", 9.0, None), ("autograd_loss", 10.0, None)])
    assert targets.verdicts(jax) == ["target (no slower than jit(grad) of the plain forward): met, 1.11x"]


def test_configs_are_every_model_at_every_size():
    assert set(targets.CONFIGS) == {f"{m}-{s}" for m in targets.MODELS for s in ("S", "M", "L")}
    assert targets.CONFIGS["indrnn-M"].shape == (65, 256, 50, 32)  # issue 16's (V, H, T, B) for the custom cells
    assert targets.DEFAULT["torch"] == [f"{m}-M" for m in targets.MODELS]


def test_bench_target_rejects_an_unknown_config_or_scale(capsys):
    pytest.importorskip("torch")
    assert cli.main(["bench", "--target", "torch", "--configs", "M"]) == 2
    assert "--configs: expected some of lstm-S, lstm-M, lstm-L, gru-torch-S" in capsys.readouterr().err
    assert cli.main(["bench", "--target", "torch", "--models", "gru"]) == 2
    assert (
        "--models: expected some of lstm, gru-torch, indrnn, peephole-lstm, mgu, got 'gru'" in capsys.readouterr().err
    )
    assert cli.main(["bench", "--target", "jax", "--scale"]) == 2
    assert "--scale measures the derivation itself: it takes no --target" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter per implementation
def test_torch_peak_memory_is_measured_in_a_process_of_its_own(capsys):
    pytest.importorskip("torch")
    argv = ["bench", "--target", "torch", "--configs", "indrnn-S", "--dtype", "float64", "--repeats", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "  command: bptt bench --target torch --configs indrnn-S --dtype float64 --repeats 3" in out
    assert "  peak: rise of the resident set over one call" in out
    rows = [r for r in map(str.split, out.splitlines()) if len(r) > 2 and r[2] == "ms"]  # the table's, not the floor's
    assert {r[0] for r in rows} >= {"emitted", "autograd_loss", "plain-autograd"}
    assert all(r[-2] == "MB" and float(r[-3]) >= 0 for r in rows)


def test_the_plain_loops_see_the_cells_parameters():
    for model, (weight, bias) in plain.OUTPUT.items():
        names = {p.name for p in targets.cell_for(model).params}
        assert weight in names and (bias is None or bias in names)


# --- the matrix-product floor -----------------------------------------------------------------


def _counted(model: str, dtype: str) -> dict:
    """Each torch implementation's (FLOPs, why) of its matrix products in one call at SHAPE."""
    module, p = _module(model, "torch"), _problem(model, dtype)
    return {
        name: floor.product_flops(floor.profiled(make(p)))
        for name, make in targets.makers_for("torch", model, module).items()
    }


def test_the_profiler_counts_the_indrnn_products_from_their_shapes():
    pytest.importorskip("torch")
    V, H, T, B = SHAPE
    N = T * B  # every product of IndRNN covers all rows: its recurrence u * h[t-1] is elementwise
    by_hand = [
        (N, V, H),  # x W^T
        (N, H, V),  # h V^T: the outputs
        (N, V, H),  # dy V: dJ/dh from the outputs
        (V, N, H),  # dy^T h: dV
        (H, N, V),  # dA^T x: dW (dJ/dx is not computed)
    ]
    want = sum(2 * m * k * n for m, k, n in by_hand)
    assert want == 6300
    assert _counted("indrnn", "float64") == dict.fromkeys(
        ["emitted", "emitted-Loss", "autograd_loss", "plain-autograd"], (want, "")
    )


def test_only_products_and_elementwise_ops_carry_flops():
    """Nothing the sum leaves out multiplies matrices, and aten::matmul (around aten::mm) counts nothing."""
    pytest.importorskip("torch")
    for model in ("mgu", "lstm"):
        module, p = _module(model, "torch"), _problem(model)
        for name, make in targets.makers_for("torch", model, module).items():
            ops = floor.profiled(make(p))
            assert {op for op, n in ops.items() if n} <= {*floor.PRODUCTS, "aten::add", "aten::mul"}, name
            assert ops["aten::matmul"] == 0


def test_lstm_products_match_the_maths_and_onednns_are_not_counted():
    pytest.importorskip("torch")
    want = flops.flops(*SHAPE, gates=4)
    assert want == 24660
    assert _counted("lstm", "float64") == dict.fromkeys(
        ["emitted", "emitted-Loss", "autograd_loss", "torch.nn.LSTM"], (want, "")
    )
    float32 = _counted("lstm", "float32")
    assert float32["emitted"] == (want, "")
    assert float32["torch.nn.LSTM"] == (
        None,
        "not counted: oneDNN's aten::mkldnn_rnn_layer, aten::mkldnn_rnn_layer_backward report no FLOPs",
    )


def test_the_throughputs_are_measured_and_onednn_takes_no_float64():
    pytest.importorskip("torch")
    assert floor.mm_gflops(3, 5, "float64") > 0
    rate, why = floor.onednn_gflops(3, 5, "float64")
    assert rate is None and why.startswith("torch.ops.mkldnn._linear_pointwise unavailable in float64: ")
    rate, why = floor.onednn_gflops(3, 5, "float32")
    assert (rate is not None and rate > 0 and why == "") or (rate is None and "unavailable" in why)


def test_a_torch_table_carries_its_floor():
    pytest.importorskip("torch")
    result = targets.run_config("torch", targets.CONFIGS["indrnn-S"], "float64", 3, memory=False)
    assert result.mm_gflops > 0 and result.uncounted == {} and result.onednn_gflops is None
    for row in result.rows:
        assert row.gflop == 6300 / 1e9 and row.floor_ms == pytest.approx(row.gflop / result.mm_gflops * 1e3)
    lines = targets.format_result(result)
    assert any(line.startswith("  matrix products of one call (torch.profiler), at torch.mm's ") for line in lines)


def test_the_floor_lines_say_each_implementations_share():
    result = _result("torch", "lstm", "float32", [("emitted", 27.3, None), ("torch.nn.LSTM", 20.0, None)])
    result.shape = {"V": 65, "H": 256, "T": 50, "B": 32}
    result.rows[0].gflop, result.rows[0].floor_ms = 1.632, 17.0
    result.mm_gflops, result.onednn_gflops = 96.0, 128.0
    result.uncounted = {"torch.nn.LSTM": "not counted: why"}
    assert targets.floor_lines(result) == [
        "matrix products of one call (torch.profiler), at torch.mm's 96.0 GFLOP/s on (32,256)x(256,256) float32 here:",
        "  torch.nn.LSTM    not counted: why",
        "  emitted          1.632 GFLOP: 17.0 ms of its 27.3 ms (62%)",
        "oneDNN (torch.ops.mkldnn._linear_pointwise) on the same product: 128.0 GFLOP/s, 1.33x torch.mm's",
    ]
    assert targets.floor_lines(_result("jax", "lstm", "float32", [("emitted", 1.0, None)])) == []
