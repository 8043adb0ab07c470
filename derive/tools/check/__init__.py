"""bptt check: a user's own gradient code, loaded without running its program, called with its
conventions found by running it, compared with the derivation and diagnosed (see ``report``)."""
