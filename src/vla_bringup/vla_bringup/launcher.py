"""Starts a node graph as supervised processes on the loopback DDS profile (the pip-path launcher).

Each node runs as ``python -m <module> --ros-args --params-file <yaml>... -p k:=v`` with the
environment of :mod:`vla_bringup.ros_env`. A node that exits while the graph runs is reported with
the tail of its log, and the graph is stopped; Ctrl-C (SIGINT) or SIGTERM stops every node cleanly
(SIGINT, then SIGTERM, then SIGKILL). On Linux each node also gets SIGTERM from the kernel when
the launcher dies without stopping it (killed by a test timeout, SIGKILL, a crash), so no graph is
left running behind a dead demo or test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vla_bringup.paths import params_file
from vla_bringup.policies import expand_policy_overrides
from vla_bringup.profiles import NodeSpec

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_launcher(launcher_pid: int) -> None:
    """Runs in the child before exec: SIGTERM this node when the launcher's thread exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != launcher_pid:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def format_param(value: object) -> str:
    """A -p value as ROS parses it (YAML): booleans lower-case, lists in brackets, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_param(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def node_command(spec: NodeSpec, overrides: Mapping[str, object] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    for name in spec.params:
        cmd += ["--params-file", str(params_file(name))]
    for key, value in {**spec.parameters, **(overrides or {})}.items():
        cmd += ["-p", f"{key}:={format_param(value)}"]
    return cmd


@dataclass
class RunningNode:
    spec: NodeSpec
    process: subprocess.Popen
    log_path: Path | None


class GraphLauncher:
    """Runs the graph; ``overrides`` maps node name -> {param: value}.

    A named policy given as ``policy.backend`` (``--set policy.backend=octo-sim``) is expanded to its
    backend, checkpoint and options here, so every graph knows the names of vla_bringup.policies.
    Raises ValueError for an override of a node the graph lacks or an unusable named policy.
    """

    def __init__(
        self,
        nodes: Sequence[NodeSpec],
        env: Mapping[str, str],
        *,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        log_dir: Path | None = None,
        echo: bool = False,
    ) -> None:
        self.nodes = list(nodes)
        self.env = dict(env)
        self.overrides = expand_policy_overrides(overrides or {})
        unknown = set(self.overrides) - {n.name for n in self.nodes}
        if unknown:
            raise ValueError(
                f"overrides for unknown node(s) {sorted(unknown)}; nodes: {[n.name for n in self.nodes]}"
            )
        self.log_dir = log_dir
        self.echo = echo
        self.running: list[RunningNode] = []
        self.failure: str | None = None

    def start(self) -> None:
        """Start every node. Call it from a thread that outlives the graph (normally the main
        thread): Linux sends the death signal when the thread that started a node exits."""
        for spec in self.nodes:
            cmd = node_command(spec, self.overrides.get(spec.name))
            log_path = self.log_dir / f"{spec.name}.log" if self.log_dir else None
            out: IO | int
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                out = open(log_path, "wb")  # noqa: SIM115 - owned by the child's lifetime
            else:
                out = subprocess.PIPE if self.echo else subprocess.DEVNULL
            process = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                preexec_fn=_death_signal_hook(),
            )
            self.running.append(RunningNode(spec, process, log_path))
            if self.echo and log_path is None:
                threading.Thread(target=_prefix_output, args=(spec.name, process), daemon=True).start()

    def poll(self) -> str | None:
        """None while every node runs; else a report of the first node that exited."""
        if self.failure:
            return self.failure
        for node in self.running:
            code = node.process.poll()
            if code is not None:
                self.failure = f"node '{node.spec.name}' exited with code {code}" + self._log_tail(node)
                return self.failure
        return None

    def _log_tail(self, node: RunningNode, lines: int = 15) -> str:
        if node.log_path is None or not node.log_path.exists():
            return ""
        tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {node.log_path}:\n    " + "\n    ".join(tail)

    def stop(self, timeout_s: float = 8.0) -> dict[str, int | None]:
        """SIGINT every node, then SIGTERM, then SIGKILL; returns exit codes."""
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            alive = [n for n in self.running if n.process.poll() is None]
            if not alive:
                break
            for node in alive:
                try:
                    os.killpg(node.process.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(n.process.poll() is None for n in alive):
                time.sleep(0.05)
        return {n.spec.name: n.process.poll() for n in self.running}

    def wait(self, poll_s: float = 0.2) -> int:
        """Block until a node fails or a signal arrives; returns an exit status."""
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.is_set():
                failure = self.poll()
                if failure:
                    print(f"[vla-stack] {failure}", file=sys.stderr)
                    return 1
                stop.wait(poll_s)
            return 0
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.stop()


def _death_signal_hook() -> Callable[[], None] | None:
    """The Popen preexec_fn that ties a node's life to the launcher's (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    launcher_pid = os.getpid()
    return lambda: _die_with_launcher(launcher_pid)


def _prefix_output(name: str, process: subprocess.Popen) -> None:
    assert process.stdout is not None
    for line in iter(process.stdout.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()
