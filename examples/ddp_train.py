"""Train the emitted PyTorch module's ``CellModel`` (the built-in lstm) with DistributedDataParallel.

Two processes on this machine (127.0.0.1, a free port) each take half of every batch.  Each one's
``model(xs, labels)`` runs the derived forward and, on ``backward()``, the derived BPTT; DDP then
averages the two gradients, so both ranks take the optimizer step that one process would take on
the whole batch, and their parameters stay equal.

- CPU: the gloo backend, always.
- GPUs: where ``torch.cuda.device_count() >= 2``, the same training runs again with the nccl
  backend, one GPU per rank.  With fewer GPUs that part is skipped, and the output says so.

    python examples/ddp_train.py [--module lstm_torch.py] [--steps 8]

``--module`` is a module written by ``bptt emit lstm --target torch``; without it, the script
renders one into a temporary folder (it needs the ``derive`` package for that).

The task: a fixed random sequence of tokens (class labels 0..V-1).  Each of the batch's B columns
is a window of T + 1 consecutive tokens of it; the inputs are the first T tokens as one-hot
vectors, the labels the token after each.  Seeds are fixed, so every run prints the same losses.
"""

import argparse
import importlib.util
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

V, H, T, B = 16, 32, 20, 8  # vocabulary (n_x = n_y), hidden size, steps, batch (split over the ranks)
WORLD = 2  # processes


def load(path):
    """The emitted module at ``path``, imported."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_lstm(folder):
    """Write the torch module of the built-in lstm into ``folder``: what ``bptt emit lstm --target
    torch`` writes."""
    from derive import derive, load_builtin
    from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
    from derive.emit.render import render

    context = module_context(derive(load_builtin("lstm"), 3), FRAMEWORKS["torch"], "examples/ddp_train.py")
    path = Path(folder) / "lstm_torch.py"
    path.write_text(render(TEMPLATES["torch"], context), encoding="utf-8")
    return path


def next_token_task(seed=0):
    """(xs (T, B, V) one-hot, labels (T, B)): B windows of a fixed random sequence, each label the
    token after its input."""
    g = torch.Generator().manual_seed(seed)
    sequence = torch.randint(V, (4 * T,), generator=g)
    starts = torch.randint(len(sequence) - T, (B,), generator=g)
    windows = torch.stack([sequence[s : s + T + 1] for s in starts.tolist()], dim=1)  # (T + 1, B)
    return torch.nn.functional.one_hot(windows[:-1], V).float(), windows[1:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(rank, backend, port, module_path, steps):
    """One rank's part: its half of the batch, DDP around the model, ``steps`` Adam steps."""
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl's communicator on this rank's GPU, not on GPU 0
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORLD))  # ranks share the cores (torchrun too)
        cell = load(module_path)
        xs, labels = next_token_task()  # the same whole batch on every rank ...
        mine = slice(rank * B // WORLD, (rank + 1) * B // WORLD)  # ... of which this rank takes its columns
        xs, labels = xs[:, mine].to(device), labels[:, mine].to(device)
        model = cell.CellModel(V, H, V, seed=0, device=device)  # float32; DDP broadcasts rank 0's values
        ddp = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        optimizer = torch.optim.Adam(ddp.parameters(), lr=0.05)
        for step in range(steps):
            optimizer.zero_grad()
            loss = ddp(xs, labels) / labels.numel()  # the mean over this rank's tokens
            loss.backward()  # the derived BPTT; DDP averages over ranks: the whole batch's mean
            optimizer.step()
            whole = loss.detach()
            dist.all_reduce(whole)  # the sum of the ranks' means; / WORLD: the whole batch's
            if rank == 0:
                print(f"  step {step}: loss {whole.item() / WORLD:.4f} per token")
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        everyone = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(everyone, flat)
        if rank == 0:
            print(f"  parameters equal on all {WORLD} ranks: {all(torch.equal(flat, p) for p in everyone)}")
    finally:
        dist.destroy_process_group()


def run(backend, module_path, steps):
    mp.spawn(train, args=(backend, free_port(), str(module_path), steps), nprocs=WORLD)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, help="the emitted lstm torch module (default: render one)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps (default: 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        module_path = args.module or render_lstm(folder)
        print(f"{module_path.name}: CellModel({V}, {H}, {V}), T = {T}, batch {B} over {WORLD} processes")
        print(f"gloo, CPU, {WORLD} processes on 127.0.0.1:")
        run("gloo", module_path, args.steps)
        gpus = torch.cuda.device_count()
        if gpus >= WORLD:
            print(f"nccl, one GPU per rank ({gpus} GPUs):")
            run("nccl", module_path, args.steps)
        else:
            print(f"nccl: skipped ({gpus} CUDA GPU{'' if gpus == 1 else 's'} here; it needs {WORLD})")


if __name__ == "__main__":
    main()
