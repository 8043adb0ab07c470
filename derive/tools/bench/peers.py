"""The peers: each model in PyTorch, JAX and autograd, each timed alone in a process of its own.

Beside OpenBLAS in one process their thread pools contend and everything reads slower, so the
parent writes the problem and the generated module's answer to a .npz file and runs
``peer_main`` in a fresh interpreter, which sets the peer up (its own parameter layout, JAX's
compilation), checks it agrees, times it like the in-process implementations and prints JSON.

Every peer keeps its parameters in its library's own layout, made once at setup:
``torch.nn.RNN``/``LSTM``/``GRU`` own theirs (torch's gate orders and two biases, ``lstm`` and
``gru``'s TORCH_LAYOUT), JAX gets stacked arrays placed on its device.  The strongest JAX we
write: the input projection for every step before ``lax.scan``, only the recurrence in it, the
output layer and the loss after it over all steps at once; ``jit(value_and_grad)``, compiled
before the first call.  ``torch-eager`` and ``autograd`` loop over t in Python, as their users do.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from derive.tools.bench import gru, lstm, seed
from derive.tools.bench.measure import agreement, blas_kernel, describe_kernel, rss_growth, rss_start, time_rounds
from derive.tools.bench.problem import Call, Layout, Maker, Problem, load, stack, unstack

Assign = Callable[[dict, int], dict]  # (stacked arrays, H) -> {torch parameter: array}
Collect = Callable[[dict, int], dict]  # ({torch parameter: gradient}, H) -> {stacked name: gradient}


def _torch_recurrent(
    kind: str, layout: Layout, output: tuple[str, ...], assign: Assign, collect: Collect, **options
) -> Maker:
    """torch.nn.<kind> with its weights from ``assign``, the output layer (``output``: the weight and
    bias names) and cross_entropy(reduction="sum") over every step."""

    def make(p: Problem) -> Call:
        import torch

        F = torch.nn.functional
        V, H = p.xs.shape[2], p.initial["h0"].shape[1]
        S = stack(p.params, layout)
        rnn = getattr(torch.nn, kind)(V, H, dtype=getattr(torch, str(p.dtype)), **options)
        with torch.no_grad():
            for name, value in assign(S, H).items():
                getattr(rnn, name).copy_(torch.from_numpy(value))
        out = [torch.tensor(S[k], requires_grad=True) for k in output]
        init = {k: torch.tensor(v[None], requires_grad=True) for k, v in p.initial.items()}
        x, labels = torch.from_numpy(p.xs), torch.from_numpy(p.labels.reshape(-1))
        hx = init["h0"] if len(init) == 1 else (init["h0"], init["c0"])
        leaves = [*rnn.parameters(), *out, *init.values()]

        def call():
            for leaf in leaves:
                leaf.grad = None
            states, _ = rnn(x, hx)
            loss = F.cross_entropy(F.linear(states, *out).reshape(-1, V), labels, reduction="sum")
            loss.backward()
            grads = collect({n: t.grad.numpy() for n, t in rnn.named_parameters()}, H)
            grads |= {k: t.grad.numpy() for k, t in zip(output, out)}
            return loss.item(), unstack(grads, layout) | {k: t.grad[0].numpy() for k, t in init.items()}

        return call

    return make


def _zeros_like(a: np.ndarray) -> np.ndarray:
    return np.zeros_like(a)


TORCH_RNN = _torch_recurrent(
    "RNN",
    seed.LAYOUT,
    ("W_hy",),
    lambda S, H: {"weight_ih_l0": S["W_xh"], "weight_hh_l0": S["W_hh"]},
    lambda g, H: {"W_xh": g["weight_ih_l0"], "W_hh": g["weight_hh_l0"]},
    nonlinearity="tanh",
    bias=False,
)
# torch's two biases: ours is bias_ih_l0, and bias_hh_l0 is held at 0 (its gradient is the same)
TORCH_LSTM = _torch_recurrent(
    "LSTM",
    lstm.TORCH_LAYOUT,
    ("W_y", "b_y"),
    lambda S, H: {
        "weight_ih_l0": S["W"],
        "weight_hh_l0": S["U"],
        "bias_ih_l0": S["b"],
        "bias_hh_l0": _zeros_like(S["b"]),
    },
    lambda g, H: {"W": g["weight_ih_l0"], "U": g["weight_hh_l0"], "b": g["bias_ih_l0"]},
)
TORCH_GRU = _torch_recurrent(  # bias_ih_l0 = (b_r, b_z, b_in), bias_hh_l0 = (0, 0, b_hn)
    "GRU",
    gru.TORCH_LAYOUT,
    ("W_y", "b_y"),
    lambda S, H: {
        "weight_ih_l0": S["W"],
        "weight_hh_l0": S["U"],
        "bias_ih_l0": S["b_x"],
        "bias_hh_l0": np.concatenate([np.zeros(2 * H, S["b_hn"].dtype), S["b_hn"]]),
    },
    lambda g, H: {
        "W": g["weight_ih_l0"],
        "U": g["weight_hh_l0"],
        "b_x": g["bias_ih_l0"],
        "b_hn": g["bias_hh_l0"][2 * H :],
    },
)


def torch_eager(p: Problem) -> Call:
    """The seed model in eager PyTorch, a Python loop over t."""
    import torch

    P = {k: torch.tensor(v, requires_grad=True) for k, v in p.params.items()}
    h0 = torch.tensor(p.initial["h0"], requires_grad=True)
    x, labels = torch.from_numpy(p.xs), torch.from_numpy(p.labels)

    def call():
        for leaf in [*P.values(), h0]:
            leaf.grad = None
        loss, h = 0, h0
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ P["W_xh"].T + h @ P["W_hh"].T)
            loss = loss + torch.nn.functional.cross_entropy(h @ P["W_hy"].T, labels[t], reduction="sum")
        loss.backward()
        return loss.item(), {k: v.grad.numpy() for k, v in P.items()} | {"h0": h0.grad.numpy()}

    return call


# (stacked params, initial states, xs) -> the states (T, B, H), in jax.numpy
Forward = Callable[[dict, dict, object], object]


def _jax(layout: Layout, forward: Forward, output: tuple[str, ...]) -> Maker:
    """jit(value_and_grad) of ``forward``, the output layer and the summed cross-entropy, compiled at setup."""

    def make(p: Problem) -> Call:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # float64 problems stay float64; float32 ones stay float32
        P = {k: jnp.asarray(v) for k, v in stack(p.params, layout).items()}
        init = {k: jnp.asarray(v) for k, v in p.initial.items()}
        xs, labels = jnp.asarray(p.xs), jnp.asarray(p.labels)

        def loss(P, init, xs, labels):
            y = forward(P, init, xs) @ P[output[0]].T
            y = y + P[output[1]] if len(output) > 1 else y
            logp = jax.nn.log_softmax(y, axis=-1)
            return -jnp.take_along_axis(logp, labels[..., None], axis=-1).sum()

        compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(P, init, xs, labels).compile()

        def call():
            value, (gP, gI) = compiled(P, init, xs, labels)
            grads = unstack({k: np.asarray(v) for k, v in gP.items()}, layout)
            return float(value), grads | {k: np.asarray(v) for k, v in gI.items()}

        return call

    return make


def _seed_forward(P, init, xs):
    import jax
    import jax.numpy as jnp

    def step(h, zx):
        h = jnp.tanh(zx + h @ P["W_hh"].T)
        return h, h

    return jax.lax.scan(step, init["h0"], xs @ P["W_xh"].T)[1]


def _lstm_forward(P, init, xs):
    import jax
    import jax.numpy as jnp

    def step(carry, a):
        h, c = carry
        i, f, g, o = jnp.split(a + h @ P["U"].T, 4, axis=-1)  # torch's order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    return jax.lax.scan(step, (init["h0"], init["c0"]), xs @ P["W"].T + P["b"])[1]


def _cho_forward(P, init, xs):
    import jax
    import jax.numpy as jnp

    H = P["U_n"].shape[0]

    def step(h, a):
        r, u = jnp.split(jax.nn.sigmoid(a[..., : 2 * H] + h @ P["U_ru"].T), 2, axis=-1)
        n = jnp.tanh(a[..., 2 * H :] + (r * h) @ P["U_n"].T)
        h = u * h + (1 - u) * n
        return h, h

    return jax.lax.scan(step, init["h0"], xs @ P["W"].T + P["b"])[1]


def _torch_gru_forward(P, init, xs):
    import jax
    import jax.numpy as jnp

    H = P["b_hn"].shape[0]

    def step(h, a):
        m = h @ P["U"].T
        r, z = jnp.split(jax.nn.sigmoid(a[..., : 2 * H] + m[..., : 2 * H]), 2, axis=-1)
        n = jnp.tanh(a[..., 2 * H :] + r * (m[..., 2 * H :] + P["b_hn"]))
        h = (1 - z) * n + z * h
        return h, h

    return jax.lax.scan(step, init["h0"], xs @ P["W"].T + P["b_x"])[1]


def autograd_seed(p: Problem) -> Call:
    """The seed model in HIPS/autograd, a Python loop over t."""
    import autograd
    import autograd.numpy as anp

    def ag_loss(P, h0, xs, labels):
        h, loss = h0, 0.0
        for t in range(xs.shape[0]):
            h = anp.tanh(xs[t] @ P["W_xh"].T + h @ P["W_hh"].T)
            y = h @ P["W_hy"].T
            m = anp.max(y, axis=-1, keepdims=True)
            logp = y - m - anp.log(anp.sum(anp.exp(y - m), axis=-1, keepdims=True))
            loss = loss - anp.sum(logp[anp.arange(len(labels[t])), labels[t]])
        return loss

    grad = autograd.value_and_grad(ag_loss, argnum=(0, 1))

    def call():
        loss, (gp, gh) = grad(p.params, p.initial["h0"], p.xs, p.labels)
        return float(loss), dict(gp) | {"h0": gh}

    return call


# model: {peer: (the package it needs, its maker)}
PEERS: dict[str, dict[str, tuple[str, Maker]]] = {
    "seed": {
        "torch-eager": ("torch", torch_eager),
        "torch.nn.RNN": ("torch", TORCH_RNN),
        "jax": ("jax", _jax(seed.LAYOUT, _seed_forward, ("W_hy",))),
        "autograd": ("autograd", autograd_seed),
    },
    "lstm": {
        "torch.nn.LSTM": ("torch", TORCH_LSTM),
        "jax": ("jax", _jax(lstm.TORCH_LAYOUT, _lstm_forward, ("W_y", "b_y"))),
    },
    "gru": {"jax": ("jax", _jax(gru.CHO_LAYOUT, _cho_forward, ("W_y", "b_y")))},
    "gru-torch": {
        "torch.nn.GRU": ("torch", TORCH_GRU),
        "jax": ("jax", _jax(gru.TORCH_LAYOUT, _torch_gru_forward, ("W_y", "b_y"))),
    },
}


def describe_library(package: str) -> str:
    """What runs a peer's arithmetic, as its library reports it."""
    if package == "torch":
        import torch

        blas = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
        kernels = torch.backends.cpu.get_cpu_capability()
        return f"torch {torch.__version__}: {kernels} kernels, {blas}, {torch.get_num_threads()} threads"
    if package == "jax":
        import jax
        import jaxlib

        return f"jax {jax.__version__} (jaxlib {jaxlib.__version__}): XLA on {jax.devices()[0].platform}"
    return f"{package}: NumPy's BLAS, {describe_kernel(blas_kernel())}"


def peer_main(model: str, peer: str, path: str, repeats: int, rtol: float) -> None:
    """In a process of its own: set up, check and time one peer; one line of JSON on stdout."""
    problem, want = load(path)
    package, maker = PEERS[model][peer]
    call = maker(problem)
    gc.collect()
    start_kb = rss_start()
    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    error, worst = agreement(result, want)
    report: dict = {"error": error, "library": describe_library(package)}
    if not error <= rtol:
        report["dropped"] = f"disagrees with generated on {worst} (error {error:.1e} > {rtol:g})"
    else:
        timing = time_rounds({peer: call}, {peer: first}, repeats)[peer]
        report |= {"times": timing.times, "faults": timing.faults, "peak_bytes": rss_growth(start_kb)}
    print(json.dumps(report))


def run_peer(model: str, peer: str, path: str, repeats: int, rtol: float) -> dict:
    """``peer_main`` in a fresh interpreter that imports this same copy of derive."""
    code = (
        f"from derive.tools.bench.peers import peer_main; peer_main({model!r}, {peer!r}, {path!r}, {repeats}, {rtol!r})"
    )
    root = str(Path(__file__).resolve().parents[3])
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        return {"dropped": f"failed in its own process: {last}"}
    return json.loads(run.stdout.strip().splitlines()[-1])
