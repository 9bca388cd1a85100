"""Tiny random OpenVLA models and checkpoints for the OpenVLA unit tests (no hub, CPU, float32)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from openvla_fixtures import save_tiny_checkpoint, tiny_model  # noqa: E402


@pytest.fixture()
def model():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("openvla_ckpt"), seed=0)
