"""The benchmark runs and its implementations agree; its timings are not tested (rerun it instead)."""

import importlib.util
import json
import sys
import tracemalloc

import numpy as np
import pytest

from derive import cli
from derive.tools.bench import gru, lstm, peers, seed
from derive.tools.bench.flops import flops
from derive.tools.bench.measure import AGREE_RTOL, MIN_REPEATS, agreement, blas_kernel, describe_kernel
from derive.tools.bench.models import CONFIGS, MODELS, Config, cell_for, module_for
from derive.tools.bench.problem import function_maker, make_problem, save, stack
from derive.tools.bench.run import Options, answer, run_config
from derive.verify.oracles.gru import reference_gru
from derive.verify.oracles.lstm import reference_lstm
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import RTOL_EXACT

SHAPE = (7, 5, 6, 3)  # V, H, T, B: odd, and each its own size, so that a transposition shows
DTYPES = ("float64", "float32")
TOLERANCE = {"float64": RTOL_EXACT, "float32": AGREE_RTOL["float32"]}
# each hand-written NumPy version, and the reference loop (written independently of the generator) it is checked against
EXPERTS = {
    "seed-min-char-rnn": ("seed", function_maker(seed.min_char_rnn), reference_loss_and_gradients),
    "seed-allocating": ("seed", function_maker(seed.allocating_numpy), reference_loss_and_gradients),
    "seed-strong": ("seed", seed.strong_numpy, reference_loss_and_gradients),
    "lstm-strong": ("lstm", lstm.strong_numpy, reference_lstm),
    "gru-strong": ("gru", gru.strong_cho, reference_gru),
}
STRONG_CLASSES = {
    "seed": (seed.StrongSeed, seed.LAYOUT),
    "lstm": (lstm.StrongLSTM, lstm.STRONG_LAYOUT),
    "gru": (gru.StrongChoGRU, gru.CHO_LAYOUT),
    "gru-torch": (gru.StrongTorchGRU, gru.TORCH_LAYOUT),
}


def _problem(model: str, dtype: str, seed_: int = 1):
    return make_problem(cell_for(model), *SHAPE, dtype, seed=seed_)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EXPERTS)
def test_hand_written_numpy_matches_the_reference_loop(name, dtype):
    model, maker, reference = EXPERTS[name]
    p = _problem(model, dtype)
    q = p.astype("float64")
    want = reference(q.params, q.xs, q.labels, **q.initial)
    error, worst = agreement(maker(p)(), want)
    assert error <= TOLERANCE[dtype], worst


@pytest.mark.parametrize("dtype", DTYPES)
def test_strong_torch_gru_matches_its_generated_module(dtype):
    p = _problem("gru-torch", dtype)  # no reference loop for the bench's own cell: the module is the yardstick
    error, worst = agreement(gru.strong_torch_gru(p)(), answer(module_for("gru-torch", 3), p))
    assert error <= TOLERANCE[dtype], worst


@pytest.mark.parametrize("model", STRONG_CLASSES)
def test_strong_numpy_returns_gradients_it_does_not_keep(model):
    strong_class, layout = STRONG_CLASSES[model]
    strong = strong_class()

    def call(p):  # (loss, grads[, dh0[, dc0]])
        return strong(stack(p.params, layout), p.xs, p.labels, *p.initial.values())

    first = call(_problem(model, "float64", seed_=1))
    arrays = [*first[1].values(), *first[2:]]
    kept = [a.copy() for a in arrays]
    call(_problem(model, "float64", seed_=2))  # the same instance, the same shapes, other numbers
    assert all(np.array_equal(a, b) for a, b in zip(arrays, kept))


@pytest.mark.parametrize("model", STRONG_CLASSES)
def test_strong_numpy_allocates_nothing_but_its_gradients_once_warm(model):
    """At (V, H, T, B) = (65, 64, 20, 16) a (T B, H) temporary is 160 KB: the slack (Python's own
    objects, a few KB) could not hide one."""
    strong_class, layout = STRONG_CLASSES[model]
    strong, p = strong_class(), make_problem(cell_for(model), 65, 64, 20, 16)
    P = stack(p.params, layout)
    strong(P, p.xs, p.labels, *p.initial.values())  # the first call makes the work arrays
    tracemalloc.start()
    result = strong(P, p.xs, p.labels, *p.initial.values())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    returned = sum(a.nbytes for a in [*result[1].values(), *result[2:]])
    assert returned <= peak < returned + 16 * 1024


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(3, 3, 3, 1), (7, 5, 6, 3), (128, 512, 100, 64)])
def test_products_add_up_to_the_flop_formula(model, shape):
    products = MODELS[model].products(*shape)
    assert sum(p.flop for p in products) == flops(*shape, MODELS[model].gates)


class _CountingNumpy:
    """numpy, but counting the FLOP of every np.dot and np.matmul of 2-D operands."""

    def __init__(self) -> None:
        self.flop = 0

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, out=None):
        self.flop += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return np.matmul(a, b, out=out)

    def dot(self, a, b, out=None):
        self.flop += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return np.dot(a, b, out=out)


@pytest.mark.parametrize("model", STRONG_CLASSES)
def test_the_strong_version_makes_the_products_its_model_lists(model, monkeypatch):
    strong_class, layout = STRONG_CLASSES[model]
    counting = _CountingNumpy()
    monkeypatch.setattr(sys.modules[strong_class.__module__], "np", counting)
    p = _problem(model, "float64")
    strong_class()(stack(p.params, layout), p.xs, p.labels, *p.initial.values())
    assert counting.flop == sum(product.flop for product in MODELS[model].products(*SHAPE))


def test_flop_count_of_config_L_leaves_out_the_inputs_delta():
    V, H, T, B = CONFIGS["L"].shape  # the first benchmark counted 6 T B (2 H V + H^2) = 1.5e10, dJ/dx included
    assert flops(V, H, T, B) == 2 * T * B * (5 * H * V + 3 * H * H) == pytest.approx(1.43e10, rel=0.01)


def test_configs_have_short_unique_names_and_known_models():
    assert all(len(name) <= 6 and c.name == name and c.model in MODELS for name, c in CONFIGS.items())
    for model in ("lstm", "gru", "gru-torch"):
        assert {c.shape for c in CONFIGS.values() if c.model == model} == {(65, 128, 50, 32), (65, 256, 100, 64)}


def test_peers_are_named_by_the_package_they_need():
    assert set(peers.PEERS) == set(MODELS)
    packages = {package for table in peers.PEERS.values() for package, _ in table.values()}
    assert packages == {"torch", "jax", "autograd"}
    assert {"torch.nn.LSTM", "jax"} <= set(peers.PEERS["lstm"]) and "torch.nn.GRU" in peers.PEERS["gru-torch"]


def test_the_kernel_is_reported_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl raises ImportError
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    text = describe_kernel(blas_kernel())
    assert text.startswith("unknown (install threadpoolctl) (OPENBLAS_CORETYPE=Haswell)")


def test_bench_rejects_an_unknown_config_or_model(capsys):
    assert cli.main(["bench", "--configs", "S,X"]) == 2
    assert "expected some of S, K, M, L, LSTM-M" in capsys.readouterr().err
    assert cli.main(["bench", "--models", "rnn"]) == 2
    assert "--models: expected some of seed, lstm, gru, gru-torch" in capsys.readouterr().err


@pytest.mark.slow  # every implementation, and the GEMM floor
def test_bench_runs_a_tiny_config_and_writes_json(tmp_path, capsys):
    path = tmp_path / "results.json"
    argv = ["bench", "--configs", "S", "--repeats", "3", "--no-peers", "--dtype", "both", "--json", str(path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for impl in ("generated", "by-definition", "reference", "min-char-rnn", "allocating-numpy", "strong-numpy"):
        assert f"  {impl} " in out
    assert "BLAS (NumPy): " in out and "GEMM floor" in out and "Python per call" in out
    data = json.loads(path.read_text())
    assert [(r["config"], r["dtype"]) for r in data["results"]] == [("S", "float64"), ("S", "float32")]
    assert data["kernel"]["blas"] and set(data["gemm_gflops"]) == set(DTYPES)
    for result in data["results"]:
        assert result["shape"] == {"V": 3, "H": 3, "T": 3, "B": 1} and result["floor_ms"] > 0
        assert [m["T"] for m in result["memory_by_steps"]] == [3, 6]
        assert set(result["overhead_ms"]) == {"generated", "strong-numpy"}
        rows = {row["impl"]: row for row in result["rows"]}
        assert rows["generated"]["ratio"] == 1.0
        for row in rows.values():
            assert row["runs"] >= MIN_REPEATS and row["median_ms"] > 0 and row["floor_ratio"] > 0
            assert row["faults_per_call"] >= 0 and row["peak_mb"] > 0 and row["memory"] == "tracemalloc"
            assert row["error"] <= AGREE_RTOL[result["dtype"]]


@pytest.mark.slow  # derives the gated cells
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lstm", "gru", "gru-torch"])
def test_run_config_on_a_tiny_gated_config(model, dtype):
    result = run_config(Config("tiny", model, *SHAPE), dtype, Options(repeats=3, with_peers=False))
    assert {row.impl for row in result.rows} >= {"generated", "strong-numpy"}, result.skipped
    assert result.floor_ms > 0 and len(result.products) == len(MODELS[model].products(*SHAPE))


@pytest.mark.slow  # imports torch and jax
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", MODELS)
def test_every_installed_peer_matches_the_generated_module(model, dtype):
    p = _problem(model, dtype)
    want = answer(module_for(model, 3), p)
    for name, (package, maker) in peers.PEERS[model].items():
        if importlib.util.find_spec(package) is None:
            continue
        error, worst = agreement(maker(p)(), want)
        assert error <= TOLERANCE[dtype], f"{name}: {worst}"


@pytest.mark.slow  # a fresh interpreter
def test_a_peer_runs_in_a_process_of_its_own(tmp_path):
    pytest.importorskip("torch")
    p = _problem("lstm", "float32")
    path = str(tmp_path / "problem.npz")
    save(path, p, answer(module_for("lstm", 3), p))
    report = peers.run_peer("lstm", "torch.nn.LSTM", path, 3, AGREE_RTOL["float32"])
    assert len(report["times"]) == 3 and report["faults"] >= 0 and report["peak_bytes"] >= 0, report
    assert report["error"] <= AGREE_RTOL["float32"] and report["library"].startswith("torch ")
