"""Built on a derivation, not stages of it: bptt check, bptt flow, bptt bench."""
