"""Shared, cached fixtures: derivations and generated modules per T (deriving is the slow part)."""

from __future__ import annotations

import functools

import pytest

from derive import outputs
from derive.cell import seed_rnn
from derive.pipeline import Derivation, derive
from derive.verify import load_module


@functools.cache
def derivation(steps: int) -> Derivation:
    return derive(seed_rnn(), steps)


@functools.cache
def module_source(steps: int) -> str:
    return outputs.module_source(derivation(steps))


@functools.cache
def generated(steps: int):
    return load_module(module_source(steps), f"rnn_T{steps}")


@pytest.fixture
def seed():
    return seed_rnn()
