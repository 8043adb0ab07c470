"""DistributedDataParallel over the emitted torch module's CellModel (the built-in lstm): 2 gloo
processes on 127.0.0.1, each with half of the batch, take the steps one process takes on all of it."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from derive import derive, load_builtin
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
from derive.emit.render import render
from derive.verify.report import RTOL_EXACT, max_rel_error

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

pytestmark = [
    pytest.mark.slow,  # two processes that import torch and meet over gloo: ~15 s
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed's gloo backend is missing"
    ),
]

ROOT = Path(__file__).resolve().parents[3]  # the repository
WORLD = 2
N_X, N_H, N_Y, T, B = 3, 4, 5, 6, 4  # distinct sizes; B splits into WORLD halves
STEPS, LR = 3, 0.05


def _load(path):
    spec = importlib.util.spec_from_file_location("lstm_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch():
    """The whole batch, float64: xs (T, B, n_x) and labels (T, B) in [0, n_y)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(T, B, N_X, generator=g, dtype=torch.float64), torch.randint(N_Y, (T, B), generator=g)


def _gathered(tensors):
    """[rank][i]: each rank's copy of tensors[i]."""
    out = [[torch.empty_like(t) for t in tensors] for _ in range(WORLD)]
    for i, t in enumerate(tensors):
        column = [out[r][i] for r in range(WORLD)]
        dist.all_gather(column, t.contiguous())
    return out


def _rank(rank, port, module_path, out):
    """One rank: its half of the batch, a loss summed over it, DDP, SGD.  Rank 0 saves every rank's
    gradients after the first backward and parameters after STEPS steps."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = _load(module_path).CellModel(N_X, N_H, N_Y, seed=0, dtype=torch.float64)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        xs, labels = _batch()
        mine = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        xs, labels = xs[:, mine], labels[:, mine]
        optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)
        saved = {}
        for step in range(STEPS):
            optimizer.zero_grad()
            ddp(xs, labels).backward()
            if step == 0:
                saved["grads"] = _gathered([p.grad for p in model.parameters()])
            optimizer.step()
        saved["params"] = _gathered([p.detach() for p in model.parameters()])
        if rank == 0:
            torch.save(saved, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    context = module_context(derive(load_builtin("lstm"), 3), FRAMEWORKS["torch"], "tests")
    path = tmp_path_factory.mktemp("ddp") / "lstm_torch.py"
    path.write_text(render(TEMPLATES["torch"], context), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ranks(module_path):
    """What rank 0 saved: {"grads": [rank][param], "params": [rank][param]}."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = module_path.parent / "ranks.pt"
    mp.spawn(_rank, args=(port, str(module_path), str(out)), nprocs=WORLD)
    return torch.load(out)


def _one_process(module_path, steps):
    """One process on the whole batch: the model after ``steps`` SGD steps (its .grad the last step's).

    Each rank's loss is the sum J_r over its half of the batch, and DDP averages the ranks' gradients:
    every rank steps along (1/WORLD) sum_r dJ_r/dw = (1/WORLD) dJ/dw, J the sum over the whole
    batch.  So the whole-batch sum's gradient is WORLD (= 2) times DDP's, and one process takes DDP's
    steps on J / WORLD."""
    model = _load(module_path).CellModel(N_X, N_H, N_Y, seed=0, dtype=torch.float64)
    xs, labels = _batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(steps):
        optimizer.zero_grad()
        (model(xs, labels) / WORLD).backward()
        optimizer.step()
    return model


def test_gradients_equal_on_both_ranks(ranks):
    first, second = ranks["grads"]
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # DDP's all-reduce hands every rank the same bits


def test_gradients_equal_one_process_on_the_whole_batch(ranks, module_path):
    model = _one_process(module_path, steps=0)
    xs, labels = _batch()
    model(xs, labels).backward()  # the sum over the whole batch: WORLD times DDP's gradient
    for (name, p), ddp_grad in zip(model.named_parameters(), ranks["grads"][0]):
        assert max_rel_error(ddp_grad.numpy(), p.grad.numpy() / WORLD) <= RTOL_EXACT, name


def test_parameters_after_steps_equal_across_ranks_and_one_process(ranks, module_path):
    first, second = ranks["params"]
    model = _one_process(module_path, steps=STEPS)
    initial = _one_process(module_path, steps=0)
    for (name, p), p0, a, b in zip(model.named_parameters(), initial.parameters(), first, second):
        assert torch.equal(a, b), name
        assert not torch.equal(a, p0.detach()), f"{name} did not move"  # the steps did something
        assert max_rel_error(a.numpy(), p.detach().numpy()) <= RTOL_EXACT, name


def test_example_script_trains():
    """examples/ddp_train.py, the README's: the loss falls, and the ranks end equal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ddp_train.py"), "--steps", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    losses = [float(m) for m in re.findall(r"^  step \d: loss (\d+\.\d+) per token$", run.stdout, re.M)]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], run.stdout
    assert "  parameters equal on all 2 ranks: True\n" in run.stdout
    gpus = torch.cuda.device_count()
    if gpus < 2:
        assert run.stdout.endswith(f"nccl: skipped ({gpus} CUDA GPU{'' if gpus == 1 else 's'} here; it needs 2)\n")
