"""Tiny random Octo models and checkpoints for the Octo backend's tests (no downloads)."""

from __future__ import annotations

import pytest

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.octo.backend import build_random_octo
from vla_policy.backends.octo.checkpoint import save_octo_checkpoint


@pytest.fixture()
def tiny_backend():
    return build_random_octo("tiny", seed=0)


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_backend):
    """A saved tiny checkpoint directory (random weights, T5 + word-level tokenizer)."""
    b = tiny_backend
    return save_octo_checkpoint(
        b.model, b.config, BRIDGE_ORIG_STATS, tmp_path / "octo", tokenizer=b.tokenizer
    )
