"""bptt-derive: Backpropagation Through Time, derived symbolically and emitted as verified NumPy.

Pipeline (one stage per module): ``cell`` -> ``unroll`` -> ``chain`` -> ``rules`` /
``analytic`` -> ``adjoint`` -> ``printing`` -> ``codegen`` / ``document`` ->
``render`` -> ``verify``; ``pipeline.derive`` runs the symbolic stages and
``cli`` is the ``bptt`` command.
"""

from .cell import BUILTIN, Cell, seed_rnn
from .pipeline import Derivation, derive

__all__ = ["BUILTIN", "Cell", "Derivation", "derive", "seed_rnn"]
__version__ = "0.1.0"
