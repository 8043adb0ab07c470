"""Stages 2-5, pure SymPy: unroll, chain-rule expansion, local derivatives, the reverse-mode program
and its proof; ``pipeline.derive`` runs them."""
