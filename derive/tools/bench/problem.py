"""One benchmark problem, and the parameter layouts implementations keep it in.

A ``Problem`` holds what every implementation of a configuration is given: the parameters in the
generated module's layout (one array per name of the cell), one-hot inputs ``xs`` (T, B, V), class
labels (T, B) and the initial states by the module's names (``"h0"``, ``"c0"``), all in one dtype.
An implementation is a *maker*: ``maker(problem)`` does its setup (converts the parameters to its
own layout, compiles, allocates what it keeps) and returns a *call*, which runs one full loss and
gradients evaluation and returns ``(loss, grads)`` with grads keyed like the module's.

A ``Layout`` maps each array an implementation keeps (stacked gates: ``"W"`` = [W_i; W_f; ...]) to
the module's names it stacks, in row order; ``stack`` builds it once at setup, ``unstack`` turns
its gradients back into views by name for the agreement check.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from derive.ir import naming
from derive.ir.cell import Cell

Layout = Mapping[str, tuple[str, ...]]  # kept array: the module's names it stacks, in row order
Grads = dict[str, np.ndarray]
Call = Callable[[], tuple[float, Grads]]


@dataclass(frozen=True)
class Problem:
    params: dict[str, np.ndarray]
    xs: np.ndarray  # (T, B, V), one-hot
    labels: np.ndarray  # (T, B), int64 class indices
    initial: dict[str, np.ndarray]  # "h0" (and "c0"): (B, H)

    @property
    def dtype(self) -> np.dtype:
        return self.xs.dtype

    def astype(self, dtype: str | np.dtype) -> Problem:
        cast = {k: v.astype(dtype) for k, v in self.params.items()}
        return replace(
            self, params=cast, xs=self.xs.astype(dtype), initial={k: v.astype(dtype) for k, v in self.initial.items()}
        )


Maker = Callable[[Problem], Call]


def make_problem(cell: Cell, V: int, H: int, T: int, B: int, dtype: str = "float64", seed: int = 0) -> Problem:
    """Parameters N(0, 1/fan_in) in the cell's order (as the module's init_params draws them), one-hot
    inputs, labels, and initial states ``h0`` (``c0``) of size 0.5; drawn in float64, rounded to ``dtype``."""
    rng = np.random.default_rng(seed)
    sizes = {"x": V, "h": H, "y": V}  # n_x = n_y = V: a character model
    params = {}
    for p in cell.params:
        shape = tuple(sizes[d] for d in p.shape)
        params[p.name] = rng.standard_normal(shape) / np.sqrt(shape[-1])
    xs = np.eye(V)[rng.integers(0, V, (T, B))]
    labels = rng.integers(0, V, (T, B))
    initial = {naming.initial_arg(s.name): 0.5 * rng.standard_normal((B, sizes[s.dim])) for s in cell.declared_states}
    return Problem(params, xs, labels, initial).astype(dtype)


def stack(params: Mapping[str, np.ndarray], layout: Layout) -> dict[str, np.ndarray]:
    """The arrays an implementation keeps, from the module's: one block of rows per name."""
    return {
        k: params[names[0]] if len(names) == 1 else np.concatenate([params[n] for n in names])
        for k, names in layout.items()
    }


def unstack(grads: Mapping[str, np.ndarray], layout: Layout) -> Grads:
    """Gradients by the module's names: views of the rows of each stacked gradient."""
    out: Grads = {}
    for k, names in layout.items():
        out.update(zip(names, np.split(grads[k], len(names))))
    return out


def generated_maker(module: types.ModuleType, by_definition: bool = False) -> Maker:
    """The generated module's fast path (or its literal sums): it takes the module's own layout."""
    fn = module.gradients_by_definition if by_definition else module.loss_and_gradients

    def make(p: Problem) -> Call:
        module.release_workspaces()  # a fresh instance: the work arrays it keeps between calls are its own
        return lambda: fn(p.params, p.xs, p.labels, **p.initial)

    return make


def function_maker(fn: Callable[..., tuple[float, Grads]]) -> Maker:
    """A function of (params, xs, labels, **initial) in the module's layout."""

    def make(p: Problem) -> Call:
        return lambda: fn(p.params, p.xs, p.labels, **p.initial)

    return make


def save(path: str, problem: Problem, want: tuple[float, Grads]) -> None:
    """The problem and the gradients to agree with, for a peer in a process of its own."""
    arrays = {"xs": problem.xs, "labels": problem.labels, "loss": np.float64(want[0])}
    arrays |= {f"param:{k}": v for k, v in problem.params.items()}
    arrays |= {f"init:{k}": v for k, v in problem.initial.items()}
    arrays |= {f"want:{k}": v for k, v in want[1].items()}
    np.savez(path, *[], **arrays)  # type: ignore[arg-type]  # numpy's stubs type the keywords as its options


def load(path: str) -> tuple[Problem, tuple[float, Grads]]:
    with np.load(path) as data:
        part = {
            kind: {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith(kind + ":")}
            for kind in ("param", "init", "want")
        }
        problem = Problem(part["param"], data["xs"], data["labels"], part["init"])
        return problem, (float(data["loss"]), part["want"])
