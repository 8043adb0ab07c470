"""float32 end to end: every module keeps the inputs' single precision in every work array and
gradient, and agrees with its float64 run to single-precision rounding (RTOL_FLOAT32)."""

import numpy as np
import pytest

from conftest import ALL_CELLS, load_cell
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.report import RTOL_FLOAT32, distinct_sizes, in_dtype, load_module, max_rel_error, random_problem


@pytest.mark.parametrize(
    "cell",
    [pytest.param(c, marks=[pytest.mark.slow] if c.startswith("corpus/") else []) for c in ALL_CELLS],
    ids=[c.split("/")[-1] for c in ALL_CELLS],
)
def test_float32_stays_float32_and_agrees_with_float64(cell):
    module = load_module(module_source(derive(load_cell(cell), 3)), "single")
    problem = random_problem(module, 5, distinct_sizes(module, 3), seed=3, batch=3)
    want_loss, want = module.loss_and_gradients(*problem)
    loss, grads = module.loss_and_gradients(*in_dtype(problem, np.float32))
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    (work,) = [sets[0][0] for sets in module._kept.values() if sets[0][0][0].dtype == np.float32]
    assert {a.dtype for a in work if isinstance(a, np.ndarray) and a.dtype.kind == "f"} == {np.dtype(np.float32)}
    assert max_rel_error(loss, want_loss) <= RTOL_FLOAT32
    for name in want:
        assert max_rel_error(grads[name], want[name]) <= RTOL_FLOAT32, name
