"""The benchmark: the generated fast path beside the other ways to get the same gradients.

For the seed model (one-hot inputs, softmax + cross-entropy at every step) and the
configurations (vocabulary V, hidden H, steps T, batch B) of ``CONFIGS``, one process
times, interleaved and after a warm-up, a full loss-and-gradients call of:

- ``generated``: the module's ``loss_and_gradients`` (emitted for this T);
- ``by-definition``: its ``gradients_by_definition``, where it is generated (small T);
- ``min-char-rnn``: Karpathy's min-char-rnn loop (one sequence at a time, column vectors, the
  backward pass over t once), written here independently;
- ``reference``: the project's hand-written reference loop (``derive.verify.oracles.rnn``), which sums
  each J_t back through time (O(T^2) per sequence, to truncate like the derivation); only where
  that stays cheap (T^2 B <= REFERENCE_MAX);
- ``expert-numpy``: a hand-written NumPy BPTT with everything but the two recurrences hoisted
  out of the loops (the expert version the issue describes), written here independently;
- ``torch-eager``, ``torch.nn.RNN``, ``jax`` (``jit`` of ``value_and_grad`` over ``lax.scan``),
  ``autograd``: the same model in those libraries, where installed (``pip install -e '.[peers]'``),
  each timed the same way in a process of its own (beside OpenBLAS in one process, their thread
  pools contend and every implementation reads slower).

Every implementation's gradients are checked against the generated ones before timing.  It
reports medians, each one's time relative to ``generated``, GFLOP/s, and the fraction of this
machine's GEMM throughput (measured here on a large float64 matrix product).  This is a
benchmark to rerun, not a test: nothing in the test suite depends on its timings.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np

from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.ir.cell import seed_rnn
from derive.verify.oracles.rnn import reference_loss_and_gradients
from derive.verify.report import load_module

CONFIGS: dict[str, tuple[int, int, int, int]] = {  # name: (V, H, T, B)
    "S": (3, 3, 3, 1),
    "K": (65, 100, 25, 1),
    "M": (65, 256, 50, 32),
    "L": (128, 512, 100, 64),
}
AGREE_RTOL = 1e-8  # float64: every implementation's gradients against the generated ones
BUDGET_S = 3.0  # per implementation and configuration: fewer repeats for a slow one (at least MIN_REPEATS)
MIN_REPEATS = 3
REFERENCE_MAX = 50 * 50 * 32  # T^2 B: the reference loop takes ~5 s at M and minutes at L

Fn = Callable[..., tuple[float, dict[str, np.ndarray]]]


def flops(V: int, H: int, T: int, B: int) -> float:
    """Multiply-adds x 2 of the matrix products: forward (W_xh x, W_hh h, W_hy h) and backward (each
    twice: the delta and the weight gradient)."""
    return 6.0 * T * B * (2 * H * V + H * H)


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's float64 matrix-product throughput, from an n x n product."""
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(np.allclose(np.reshape(got, np.shape(want)), want, rtol=AGREE_RTOL, atol=1e-12))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def problem(V: int, H: int, T: int, B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {
        "W_xh": rng.standard_normal((H, V)) / np.sqrt(V),
        "W_hh": rng.standard_normal((H, H)) / np.sqrt(H),
        "W_hy": rng.standard_normal((V, H)) / np.sqrt(H),
    }
    xs = np.eye(V)[rng.integers(0, V, (T, B))]
    labels = rng.integers(0, V, (T, B))
    return params, xs, labels, np.zeros((B, H))


def min_char_rnn(params, xs, labels, h0):
    """min-char-rnn's lossFun, for each sequence of the batch: forward over t keeping every state,
    then one backward pass over t carrying dh_next, column vectors throughout."""
    W_xh, W_hh, W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
    T, B, V = xs.shape
    loss = 0.0
    dW_xh, dW_hh, dW_hy = np.zeros_like(W_xh), np.zeros_like(W_hh), np.zeros_like(W_hy)
    dh0 = np.zeros_like(h0)
    for b in range(B):
        hs, ps = {-1: h0[b].reshape(-1, 1)}, {}
        for t in range(T):
            x = xs[t, b].reshape(-1, 1)
            hs[t] = np.tanh(W_xh @ x + W_hh @ hs[t - 1])
            y = W_hy @ hs[t]
            e = np.exp(y - np.max(y))
            ps[t] = e / np.sum(e)
            loss += -np.log(ps[t][labels[t, b], 0])
        dh_next = np.zeros_like(hs[0])
        for t in reversed(range(T)):
            dy = np.copy(ps[t])
            dy[labels[t, b]] -= 1
            dW_hy += dy @ hs[t].T
            dh = W_hy.T @ dy + dh_next
            dz = (1 - hs[t] * hs[t]) * dh
            dW_xh += dz @ xs[t, b].reshape(1, -1)
            dW_hh += dz @ hs[t - 1].T
            dh_next = W_hh.T @ dz
        dh0[b] = dh_next[:, 0]
    return float(loss), {"W_xh": dW_xh, "W_hh": dW_hh, "W_hy": dW_hy, "h0": dh0}


def expert_numpy(params, xs, labels, h0):
    """The seed model's BPTT as an expert writes it in NumPy: the input projection, the output
    layer, the softmax, the loss and the three weight gradients each one product over all
    steps; only the recurrences h_t (forward) and delta_t (backward) loop over t."""
    W_xh, W_hh, W_hy = params["W_xh"], params["W_hh"], params["W_hy"]
    T, B, V = xs.shape
    H = W_hh.shape[0]
    h = np.empty((T + 1, B, H))
    h[0] = h0
    zx = (xs.reshape(T * B, V) @ W_xh.T).reshape(T, B, H)
    for t in range(T):
        h[t + 1] = np.tanh(zx[t] + h[t] @ W_hh.T)
    hs = h[1:].reshape(T * B, H)
    y = hs @ W_hy.T
    y -= y.max(axis=1, keepdims=True)
    e = np.exp(y)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(T * B)
    flat = labels.reshape(T * B)
    loss = float(np.sum(np.log(s[:, 0]) - y[rows, flat]))
    dy = e / s
    dy[rows, flat] -= 1.0
    dh = (dy @ W_hy).reshape(T, B, H)
    dz = np.empty((T, B, H))
    carry = np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        dz[t] = (1.0 - h[t + 1] ** 2) * (dh[t] + carry)
        carry = dz[t] @ W_hh
    dzs = dz.reshape(T * B, H)
    grads = {
        "W_xh": dzs.T @ xs.reshape(T * B, V),
        "W_hh": dzs.T @ h[:-1].reshape(T * B, H),
        "W_hy": dy.T @ hs,
        "h0": carry,
    }
    return loss, grads


def _torch_eager() -> Fn:
    import torch

    def torch_eager(params, xs, labels, h0):
        P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        h = torch.tensor(h0, requires_grad=True)
        x, lab = torch.from_numpy(xs), torch.from_numpy(labels)
        loss = torch.zeros((), dtype=torch.float64)
        state = h
        for t in range(x.shape[0]):
            state = torch.tanh(x[t] @ P["W_xh"].T + state @ P["W_hh"].T)
            loss = loss + torch.nn.functional.cross_entropy(state @ P["W_hy"].T, lab[t], reduction="sum")
        loss.backward()
        grads = {k: v.grad.numpy() for k, v in P.items()}
        grads["h0"] = h.grad.numpy()
        return loss.item(), grads

    return torch_eager


def _torch_nn_rnn() -> Fn:
    import torch

    def torch_nn_rnn(params, xs, labels, h0):
        V, H = params["W_xh"].shape[1], params["W_hh"].shape[0]
        rnn = torch.nn.RNN(V, H, nonlinearity="tanh", bias=False, dtype=torch.float64)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(params["W_xh"]))
            rnn.weight_hh_l0.copy_(torch.from_numpy(params["W_hh"]))
        W_hy = torch.tensor(params["W_hy"], requires_grad=True)
        h = torch.tensor(h0[None], requires_grad=True)
        states, _ = rnn(torch.from_numpy(xs), h)
        logits = (states @ W_hy.T).reshape(-1, W_hy.shape[0])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).reshape(-1), reduction="sum")
        loss.backward()
        grads = {"W_xh": rnn.weight_ih_l0.grad.numpy(), "W_hh": rnn.weight_hh_l0.grad.numpy()}
        grads.update({"W_hy": W_hy.grad.numpy(), "h0": h.grad[0].numpy()})
        return loss.item(), grads

    return torch_nn_rnn


def _jax() -> Fn:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def jax_loss(P, h0, xs, labels):
        def step(h, inputs):
            x, label = inputs
            h = jnp.tanh(x @ P["W_xh"].T + h @ P["W_hh"].T)
            y = h @ P["W_hy"].T
            logp = y - jax.scipy.special.logsumexp(y, axis=-1, keepdims=True)
            return h, -jnp.take_along_axis(logp, label[:, None], axis=-1).sum()

        _, losses = jax.lax.scan(step, h0, (xs, labels))
        return losses.sum()

    grad = jax.jit(jax.value_and_grad(jax_loss, argnums=(0, 1)))

    def jax_fn(params, xs, labels, h0):
        loss, (gp, gh) = grad(params, h0, xs, labels)
        grads = {k: np.asarray(v) for k, v in gp.items()}
        grads["h0"] = np.asarray(gh)
        return float(loss), grads

    return jax_fn


def _autograd() -> Fn:
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

    ag = autograd.value_and_grad(ag_loss, argnum=(0, 1))

    def autograd_fn(params, xs, labels, h0):
        loss, (gp, gh) = ag(params, h0, xs, labels)
        grads = dict(gp)
        grads["h0"] = gh
        return float(loss), grads

    return autograd_fn


# name: (the package it needs, the factory that imports it and returns the function)
PEERS: dict[str, tuple[str, Callable[[], Fn]]] = {
    "torch-eager": ("torch", _torch_eager),
    "torch.nn.RNN": ("torch", _torch_nn_rnn),
    "jax": ("jax", _jax),
    "autograd": ("autograd", _autograd),
}


def installed_peers() -> list[str]:
    """The peers whose package is installed (found, not imported: each runs in a process of its own)."""
    return [name for name, (package, _) in PEERS.items() if importlib.util.find_spec(package) is not None]


def _time_all(impls: dict[str, Fn], args: tuple, repeats: int, want: tuple[float, dict]) -> tuple[dict, dict]:
    """Warm each implementation up and check it against ``want``; then time them in interleaved
    rounds.  ({impl: [seconds]}, {impl: why it was dropped})."""
    want_loss, want_grads = want
    times: dict[str, list[float]] = {}
    budget: dict[str, int] = {}
    dropped: dict[str, str] = {}
    for impl, fn in list(impls.items()):
        start = time.perf_counter()
        loss, grads = fn(*args)
        first = time.perf_counter() - start
        bad = [k for k in want_grads if not _close(grads[k], want_grads[k])]
        if bad or not np.isclose(loss, want_loss, rtol=AGREE_RTOL):
            dropped[impl] = f"disagrees with generated on {', '.join(bad) or 'the loss'}"
            del impls[impl]
            continue
        times[impl] = []
        budget[impl] = max(MIN_REPEATS, min(repeats, int(BUDGET_S / max(first, 1e-9))))
    for _ in range(repeats):  # interleaved: every implementation once per round
        for impl, fn in impls.items():
            if len(times[impl]) < budget[impl]:
                times[impl].append(_timed(partial(fn, *args)))
    return times, dropped


def _peer_main(peer: str, config: str, repeats: int) -> None:
    """In a process of its own: time one peer on one configuration; JSON on stdout."""
    V, H, T, B = CONFIGS[config]
    args = problem(V, H, T, B)
    want = module_for(T).loss_and_gradients(*args)
    times, dropped = _time_all({peer: PEERS[peer][1]()}, args, repeats, want)
    json.dump({"times": times.get(peer, []), "dropped": dropped.get(peer)}, sys.stdout)


def _peer_times(peer: str, config: str, repeats: int) -> tuple[list[float], str | None]:
    code = f"from derive.tools.bench import _peer_main; _peer_main({peer!r}, {config!r}, {repeats})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        return [], f"failed in its own process: {last}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return out["times"], out["dropped"]


@dataclass
class Row:
    impl: str
    median_ms: float
    runs: int
    ratio: float  # median / the generated fast path's median
    gflops: float
    peak_fraction: float
    own_process: bool = False  # a peer, timed in a process of its own


@dataclass
class Result:
    config: str
    shape: dict[str, int]
    flop: float
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # impl: why it did not run


def module_for(steps: int) -> types.ModuleType:
    return load_module(module_source(derive(seed_rnn(), steps)), f"rnn_T{steps}")


def run_config(name: str, repeats: int, peak: float, with_reference: bool = True, with_peers: bool = True) -> Result:
    V, H, T, B = CONFIGS[name]
    module = module_for(T)
    args = problem(V, H, T, B)
    impls: dict[str, Fn] = {"generated": module.loss_and_gradients}
    result = Result(name, {"V": V, "H": H, "T": T, "B": B}, flops(V, H, T, B))
    if module.BY_DEFINITION:
        impls["by-definition"] = module.gradients_by_definition
    else:
        result.skipped["by-definition"] = f"not generated for T = {T}"
    impls["min-char-rnn"] = min_char_rnn
    if with_reference and T * T * B <= REFERENCE_MAX:
        impls["reference"] = reference_loss_and_gradients
    elif with_reference:
        result.skipped["reference"] = f"T^2 B = {T * T * B} > {REFERENCE_MAX}: it sums each J_t back through time"
    impls["expert-numpy"] = expert_numpy
    times, dropped = _time_all(impls, args, repeats, module.loss_and_gradients(*args))
    result.skipped.update(dropped)
    own = []
    for peer in installed_peers() if with_peers else []:  # each in a process of its own
        peer_times, why = _peer_times(peer, name, repeats)
        if why:
            result.skipped[peer] = why
        else:
            times[peer] = peer_times
            own.append(peer)
    base = statistics.median(times["generated"])
    for impl in times:
        med = statistics.median(times[impl])
        gf = result.flop / med / 1e9
        result.rows.append(Row(impl, med * 1e3, len(times[impl]), med / base, gf, gf / peak, impl in own))
    return result


def format_results(results: list[Result], peak: float) -> str:
    lines = [f"GEMM throughput (float64, 1024^3 product): {peak:.0f} GFLOP/s"]
    for res in results:
        s = res.shape
        lines.append(f"\n{res.config} (V={s['V']}, H={s['H']}, T={s['T']}, B={s['B']}): {res.flop / 1e9:.3g} GFLOP")
        head = ("implementation", "median", "runs", "vs generated", "GFLOP/s", "of GEMM")
        lines.append("  {:<15} {:>11} {:>5} {:>13} {:>8} {:>8}".format(*head))
        for row in sorted(res.rows, key=lambda r: r.median_ms):
            impl = row.impl + (" *" if row.own_process else "")
            lines.append(
                f"  {impl:<15} {row.median_ms:>8.3f} ms {row.runs:>5} {row.ratio:>12.2f}x "
                f"{row.gflops:>8.2f} {100 * row.peak_fraction:>7.1f}%"
            )
        for impl, why in res.skipped.items():
            lines.append(f"  {impl:<15} not run: {why}")
    if any(row.own_process for res in results for row in res.rows):
        lines.append("\n* timed in a process of its own: its threads beside OpenBLAS's in one process contend")
    return "\n".join(lines)


def main(
    configs: list[str], repeats: int, json_path: str | None, with_reference: bool = True, with_peers: bool = True
) -> str:
    peak = gemm_gflops()
    results = [run_config(name, repeats, peak, with_reference, with_peers) for name in configs]
    if json_path:
        payload = {
            "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.machine()},
            "gemm_gflops": peak,
            "results": [asdict(r) for r in results],
        }
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    return format_results(results, peak)
