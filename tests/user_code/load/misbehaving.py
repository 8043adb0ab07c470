"""Functions that go wrong the ways a user's can, for bptt check's loader tests: each must be
reported in one line at the user's own line, never at numpy's or bptt check's."""

import sys

import numpy as np

print("loading the model ...")


def spin(steps):
    """Never returns: n walks away from steps."""
    n = 0
    while n < steps:
        n -= 1
    return n


def stacks_mismatched_states(hprev):
    """numpy raises, inside its own Python code, at the user's call."""
    return np.stack([hprev, hprev.T])


def exits():
    sys.exit("no data file")


def argv():
    return list(sys.argv)
