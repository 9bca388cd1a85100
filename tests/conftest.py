"""Test-wide set-up: every ROS process runs on the loopback Fast DDS profile, one domain per worker."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from vla_bringup.paths import repo_root
from vla_bringup.ros_env import apply_loopback_profile

sys.path.insert(0, str(Path(__file__).parent))  # tests/params_copy.py


def _worker_domain_id() -> int:
    # xdist names workers gw0, gw1, ...; parallel pytest runs on one machine (developers, CI) get
    # different bases from their pid so that two suites never share a DDS domain.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    base = int(os.environ.get("VLA_TEST_DOMAIN_BASE", str(1 + (os.getppid() * 7) % 90)))
    return 1 + (base - 1 + index) % 100


apply_loopback_profile(domain_id=_worker_domain_id(), log_dir=tempfile.mkdtemp(prefix="vla-test-roslog-"))
os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden outputs (tests/data/*golden*) from this run instead of comparing",
    )


@pytest.fixture
def config_copy(tmp_path, monkeypatch) -> Path:
    """A copy of config/ that the launcher, load_deployment and the replica read (VLA_STACK_CONFIG_DIR)."""
    copy = tmp_path / "config"
    shutil.copytree(repo_root() / "config", copy)
    monkeypatch.setenv("VLA_STACK_CONFIG_DIR", str(copy))
    return copy
