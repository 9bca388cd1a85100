"""`vla-stack inspect`: the report on stdout, exit 1 when the checkpoint does not fit the graph."""

from __future__ import annotations

from vla_bringup.paths import repo_root
from vla_stack.cli import main

OCTO_SIM = str(repo_root() / "models" / "octo-sim")


def test_inspect_the_shipped_policy(capsys):
    assert main(["inspect", OCTO_SIM]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {OCTO_SIM} (backend octo)" in out and "inspect: no mismatch" in out
    assert main(["inspect", "octo-sim"]) == 0  # a named policy: its checkpoint and options


def test_inspect_flags_a_mismatch_and_exits_1(capsys):
    assert main(["inspect", OCTO_SIM, "--set", "policy.chunk_horizon=6"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: policy.chunk_horizon 6 exceeds" in out and "inspect: 1 mismatch(es)" in out


def test_inspect_of_something_else_is_a_one_line_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "vla-stack inspect: error: checkpoint file missing" in capsys.readouterr().err
