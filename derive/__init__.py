"""bptt-derive: Backpropagation Through Time, derived symbolically and emitted as verified NumPy.

The folders are the pipeline's stages: ``spec`` (a .cell file, read into the ``ir`` every stage
speaks) -> ``derivation`` (unroll, chain rule, rules, the delta program and its proof;
``derivation.pipeline.derive`` runs them) -> ``emit`` (``numpy``: the module; ``document``: the
.tex, .md and .html) -> ``verify``.  ``tools`` holds bptt check, flow and bench, ``cli`` the
``bptt`` command.
"""

from derive.derivation.pipeline import Derivation, derive
from derive.ir.cell import Cell, builtin_names, load_builtin, seed_rnn

__all__ = ["Cell", "Derivation", "builtin_names", "derive", "load_builtin", "seed_rnn"]
__version__ = "0.1.0"
