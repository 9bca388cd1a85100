"""``vla-stack --help`` stays quick: building the parser loads no model, sim or ROS library.

Checked by what is imported, not by timing: torch, mujoco and rclpy load only when a command that
needs them runs (each behind a commented lazy import, see tests/unit/test_import_graph.py).
"""

from __future__ import annotations

import subprocess
import sys

from vla_stack.cli import main

HEAVY = ("torch", "mujoco", "rclpy", "transformers", "matplotlib")


def modules_loaded_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stdout.split())


def test_building_the_parser_loads_no_heavy_library():
    loaded = modules_loaded_by("from vla_stack.cli import build_parser\nbuild_parser()")
    assert "vla_stack" in loaded and "vla_eval" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_check_sees_a_heavy_import():
    assert "mujoco" in modules_loaded_by("import vla_sim.widowx_sim")


def test_a_configuration_error_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    """A bad value the user gave (here ROS_DOMAIN_ID) names itself without a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROS_DOMAIN_ID", "500")
    monkeypatch.delenv("VLA_STACK_DEBUG", raising=False)
    assert main(["demo", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "vla-stack demo: error: ROS_DOMAIN_ID '500' is outside 0..101" in err
    assert "Traceback" not in err
