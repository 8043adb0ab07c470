"""The PyTorch and JAX targets: the fast path's schedule as a framework's scan (``scan``), laid out
by each target's template (``codegen``)."""
