"""What ``torch.compile`` gains on the emitted torch module: the time of one training step of a
built-in cell's ``CellModel`` (forward, the derived backward, an SGD step) at (V, H, T, B), on CPU,
timed in interleaved rounds in one process (so that the machine's drift falls on every variant alike):

- ``eager``: ``model(xs, labels)``;
- ``compile(model)``: ``torch.compile(model)``, the user's path.  ``loss`` checks its arguments
  before it calls ``Loss``, and those checks break the graph (the labels' range check branches on
  data); ``Loss``, forward and derived backward, is compiled as a graph of its own;
- ``compile(Loss)``: ``torch.compile(..., fullgraph=True)`` of ``Loss.apply`` on the rows that
  ``loss`` would pass it: one graph, no checks.

    python benchmarks/compile.py [--cell lstm] [--shape 65,128,50,32] [--dtype float32] [--rounds 7] [--threads 1]

The first call of each variant (for the compiled ones, their compile time; the second compiled
variant reuses kernels the first compiled) is printed apart.  Each round times
``--steps`` training steps of each variant, in turn; the median per step over the rounds is printed,
and each variant's ratio to eager.  On a machine whose cores other work shares, ``--threads 1``:
there, with 2 threads, each of PyTorch's OpenMP-parallel CPU kernels (softmax among them) can wait
a scheduler slice (~12 ms) for its second thread.  A benchmark to rerun, not a test.
"""

import argparse
import statistics
import sys
import time

import torch

from derive import derive, load_builtin
from derive.emit.frameworks.codegen import FRAMEWORKS, TEMPLATES, module_context
from derive.emit.render import render
from derive.verify.report import load_module


def emitted(cell: str):
    """The cell's torch module, in sys.modules as an import puts it (dynamo resolves the globals of
    a function it traces through its module's name)."""
    context = module_context(derive(load_builtin(cell), 3), FRAMEWORKS["torch"], "benchmarks/compile.py")
    module = load_module(render(TEMPLATES["torch"], context), f"{cell}_torch")
    sys.modules[module.__name__] = module
    return module


def variants(module, V: int, H: int, T: int, B: int, dtype):
    """{name: (model, loss())}: each variant's own model (the same initial values) and its loss call."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(V, (T + 1, B), generator=g)
    xs = torch.nn.functional.one_hot(labels[:-1], V).to(dtype)  # each step's label is the next input
    labels = labels[1:]
    sizes = {"n_x": V, "n_h": H, "n_y": V}

    def model():
        return module.CellModel(*(sizes[d] for d in module.DIMS), seed=0, dtype=dtype)

    eager, compiled, whole = model(), model(), model()
    compiled_model = torch.compile(compiled)
    weights = [getattr(whole, name) for name in module.PARAMS]
    initial = [xs.new_zeros(B, H) for _ in module.INITIAL]
    rows = (xs.reshape(T * B, V), labels.reshape(-1))
    compiled_loss = torch.compile(lambda: module.Loss.apply(*rows, *initial, *weights), fullgraph=True)
    return {
        "eager": (eager, lambda: eager(xs, labels)),
        "compile(model)": (compiled, lambda: compiled_model(xs, labels)),
        "compile(Loss)": (whole, compiled_loss),
    }


def training_step(model, loss, optimizer) -> None:
    optimizer.zero_grad()
    loss().backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--shape", default="65,128,50,32", help="V,H,T,B")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="training steps per variant per round")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    V, H, T, B = (int(n) for n in args.shape.split(","))
    dtype = getattr(torch, args.dtype)
    threads = torch.get_num_threads()
    print(f"{args.cell}, (V, H, T, B) = ({V}, {H}, {T}, {B}), {args.dtype}, CPU, {threads} thread{'s' * (threads > 1)}")
    print(f"torch {torch.__version__}")
    runs = {}
    for name, (model, loss) in variants(emitted(args.cell), V, H, T, B, dtype).items():
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        training_step(model, loss, optimizer)  # compiles, for the compiled variants
        print(f"  first step of {name:<15} {time.perf_counter() - start:8.2f} s")
        runs[name] = (model, loss, optimizer)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                training_step(*run)
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["eager"])
    print(f"median ms per training step over {args.rounds} rounds of {args.steps} steps:")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:<15} {1e3 * t:8.2f} ms   {base / t:5.2f}x eager's speed   (min {1e3 * min(ts):.2f})")


if __name__ == "__main__":
    main()
