"""The NumPy module: the fast path's schedule and its printing, and the by-definition code."""
