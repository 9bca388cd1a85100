"""Only *_node.py modules and the vla_common.ros package may import rclpy or ROS message types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROS_MODULES = (
    "rclpy",
    "std_msgs",
    "sensor_msgs",
    "trajectory_msgs",
    "diagnostic_msgs",
    "rosgraph_msgs",
    "builtin_interfaces",
    "rcl_interfaces",
    "geometry_msgs",
    "std_srvs",
)


def pure_modules() -> list[str]:
    names = []
    for path in sorted(SRC.glob("*/vla_*/**/*.py")):
        package_root = path.parents[len(path.relative_to(SRC).parts) - 2]
        module = ".".join(path.relative_to(package_root).with_suffix("").parts)
        if module.endswith("__init__"):
            module = module.rsplit(".", 1)[0]
        if path.name.endswith("_node.py") or ".ros" in module:
            continue
        names.append(module)
    return names


def import_with_ros_blocked(modules: list[str]) -> subprocess.CompletedProcess:
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {ROS_MODULES!r}:\n"
        "            raise ImportError(f'ROS module {name} imported by a pure module')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    __import__(m)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_pure_modules_import_with_ros_blocked():
    modules = pure_modules()
    assert len(modules) > 20 and "vla_actuation.safety" in modules and "vla_sim.sim_node" not in modules
    run = import_with_ros_blocked(modules)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_blocker_catches_a_node_module():
    run = import_with_ros_blocked(["vla_sim.sim_node"])
    assert run.returncode != 0 and "ROS module rclpy imported" in run.stderr
