"""Tiny random RT-2-style checkpoints (PaliGemma, word-level tokenizer) saved once per session."""

from __future__ import annotations

import pytest

from vla_policy.backends.rt2.random_model import save_tiny_rt2_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rt2")
    return {
        mode: save_tiny_rt2_checkpoint(root / mode, token_mode=mode, seed=0)
        for mode in ("number_tokens", "token_table")
    }
