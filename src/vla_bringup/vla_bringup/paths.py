"""Where the project's config/ and launch/ folders are, on the pip path and on a colcon install."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[3]


def config_dir() -> Path:
    """The folder holding params YAML and the Fast DDS profile.

    Order: $VLA_STACK_CONFIG_DIR, the repository checkout this package runs from, then the
    ament share directory of vla_bringup (a colcon install).
    """
    override = os.environ.get("VLA_STACK_CONFIG_DIR")
    if override:
        return Path(override)
    in_repo = _REPO_ROOT / "config"
    if (in_repo / "fastdds_localhost.xml").is_file():
        return in_repo
    try:
        # lazy: only a colcon install has ament_index_python; the pip path never reaches here
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("vla_bringup")) / "config"
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed there"
        raise FileNotFoundError(
            f"config/ not found: not in the checkout {in_repo} and vla_bringup has no ament share "
            "directory; set VLA_STACK_CONFIG_DIR"
        ) from exc


def params_file(name: str, directory: Path | None = None) -> Path:
    """Path of <name>.yaml in ``directory`` (default config/), with an error naming a missing file."""
    path = (directory or config_dir()) / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"params file '{name}': {path} does not exist")
    return path


def repo_root() -> Path:
    return _REPO_ROOT
