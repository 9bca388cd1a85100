"""The environment every ROS process of this project runs in: loopback-only Fast DDS.

Fast DDS sends discovery out of the external interface by default. Every process we start gets the
project's profile (shared memory + UDPv4 on 127.0.0.1 only), an explicit ROS_DOMAIN_ID and a
ROS_LOG_DIR of its own. Call :func:`apply_loopback_profile` before ``import rclpy`` initialises.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from vla_bringup.paths import config_dir

PROFILE_FILE_NAME = "fastdds_localhost.xml"
DEFAULT_DOMAIN_ID = 42


def profile_path() -> Path:
    path = config_dir() / PROFILE_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS loopback profile missing: {path}")
    return path


def loopback_environment(
    base: Mapping[str, str] | None = None,
    *,
    domain_id: int | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default: os.environ) with the loopback DDS settings in force."""
    env = dict(os.environ if base is None else base)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile_path())
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    # Not ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: with it, rmw_fastrtps adds sockets on the
    # external interface and 0.0.0.0 next to the profile's (tests/ros/test_launcher_loopback.py).
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    env.pop("ROS_STATIC_PEERS", None)
    # A profile we set explicitly must not be overridden by an environment-wide XML.
    env.pop("RMW_FASTRTPS_USE_QOS_FROM_XML", None)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(DEFAULT_DOMAIN_ID))
    if not 0 <= int(env["ROS_DOMAIN_ID"]) <= 101:
        raise ValueError(f"ROS_DOMAIN_ID '{env['ROS_DOMAIN_ID']}' is outside 0..101")
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    elif "ROS_LOG_DIR" not in env:
        env["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="vla-stack-roslog-")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_loopback_profile(*, domain_id: int | None = None, log_dir: str | None = None) -> dict[str, str]:
    """Put the loopback settings into this process's own environment (before rclpy.init)."""
    env = loopback_environment(domain_id=domain_id, log_dir=log_dir)
    os.environ.update(env)
    return env
