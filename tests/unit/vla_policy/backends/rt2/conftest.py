"""Tiny random RT-2-style checkpoints (PaliGemma) saved once per session, one per token mode;
``real_tokenizers`` (offline builds of real tokenizer classes) importable by the tests here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vla_policy.backends.rt2.config import TOKEN_MODES
from vla_policy.backends.rt2.random_model import save_tiny_rt2_checkpoint

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rt2")
    return {mode: save_tiny_rt2_checkpoint(root / mode, token_mode=mode, seed=0) for mode in TOKEN_MODES}
