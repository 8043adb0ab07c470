"""bptt bench: the generated fast path beside the strongest alternatives we can write or install.

For each configuration (a model at vocabulary V, hidden H, steps T, batch B; ``models.CONFIGS``)
and dtype, one process checks and then times, interleaved and after a warm-up, a full
loss-and-gradients call of: the generated module (``generated``; ``by-definition`` where it is
generated); hand-written NumPy (``seed``: min-char-rnn, an allocating hoisted version and the strong
one; ``lstm``, ``gru``: strong versions on stacked gates); the reference loop (seed, where cheap).
Peers (``peers``: torch.nn.RNN/LSTM/GRU, torch-eager, JAX, autograd, where installed) are each
timed alone in a process of their own.  Per implementation: median, ratio to generated, ratio to
the GEMM floor, GFLOP/s, minor page faults per call, peak memory (``measure``); per
configuration: the floor, the generated module's memory at T and 2T, and the Python cost per
call.  A benchmark to rerun, not a test: nothing in the test suite depends on its timings.

Modules: ``problem`` (the inputs and parameter layouts), ``measure`` (timing, faults, memory, the
BLAS kernel, the floor), ``flops`` (the products of a call), ``inplace`` (what the strong NumPy
versions share), ``seed``, ``lstm``, ``gru`` (hand-written versions), ``peers``, ``models``
(configurations), ``run`` and ``report``.

``bptt bench --target torch|jax`` (``targets``): the emitted framework module beside torch.nn.LSTM/GRU,
plain autograd (``plain``: a per-step loop; and the module's own ``autograd_loss``) and jit(grad) of
the plain forward, for the built-in lstm, gru_torch.cell and the bench's custom cells (indrnn.cell,
peephole_lstm.cell, mgu.cell); time and peak memory.  benchmarks/targets_*.json hold a run's results.
"""

from derive.tools.bench.models import CONFIGS, MODELS
from derive.tools.bench.run import Options, main

__all__ = ["CONFIGS", "MODELS", "Options", "main"]
