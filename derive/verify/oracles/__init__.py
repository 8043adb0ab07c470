"""Hand-written BPTT loops, written independently of the generator: the yardsticks."""
