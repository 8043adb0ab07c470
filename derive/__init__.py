"""bptt-derive: Backpropagation Through Time, derived symbolically and emitted as verified NumPy.

Pipeline (one stage per module): ``spec`` (a .cell file) -> ``cell`` -> ``unroll`` -> ``chain`` -> ``rules`` /
``analytic`` -> ``adjoint`` -> ``printing`` -> ``codegen`` / ``document`` ->
``render`` -> ``verify``; ``pipeline.derive`` runs the symbolic stages and
``cli`` is the ``bptt`` command.
"""

from .cell import Cell, builtin_names, load_builtin, seed_rnn
from .pipeline import Derivation, derive

__all__ = ["Cell", "Derivation", "builtin_names", "derive", "load_builtin", "seed_rnn"]
__version__ = "0.1.0"
