"""Editing a copy of config/ in tests (see the `config_copy` fixture in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import yaml


def edit_params(path: Path, node: str, **values: object) -> None:
    """Set ``values`` in the ros__parameters of ``node`` ('/**' for every node) in a params file."""
    document = yaml.safe_load(path.read_text())
    document[node]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(document))


def set_control_hz(config: Path, control_hz: float) -> None:
    """The one control rate of every node, in config/control.yaml."""
    edit_params(config / "control.yaml", "/**", control_hz=control_hz)
