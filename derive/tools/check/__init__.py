"""bptt check: a user's own gradient code, loaded, called through an adapter, compared with the
derivation and diagnosed."""
