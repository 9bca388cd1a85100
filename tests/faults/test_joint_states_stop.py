"""safety.md case 7, joint states that stop: the actuation node holds, names why, resumes without a jump.

The sim cannot stop its joint states without stopping its clock (and with it every node's timers),
so this runs the actuation node on wall time against the fake WidowX driver of tests/ros (joint
states at 50 Hz that follow the commands), and pauses the driver with SIGSTOP while the injector
keeps sending actions at 5 Hz.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from graph_helpers import start_graph, wait_until
from injector import Injector, all_alive, node_pids, paused, repeat, spinning

from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment

pytestmark = pytest.mark.ros

FAKE_ROBOT = Path(__file__).parents[1] / "ros" / "fake_robot_process.py"
JOINT_STATE_TIMEOUT_S = 0.5  # config/actuation.yaml joint_state_timeout_s


@pytest.fixture()
def graph(tmp_path: Path):
    env = loopback_environment(log_dir=str(tmp_path / "fake"))
    fake = subprocess.Popen([sys.executable, str(FAKE_ROBOT)], env=env)
    launcher = start_graph([NodeSpec("actuation", "vla_actuation.actuation_node", ("actuation",))], tmp_path)
    rclpy.init()
    injector = Injector(sim_time=False, log_dir=tmp_path / "logs")
    try:
        with spinning(injector):
            assert wait_until(lambda: injector.count_subscribers("/vla/action") > 0, 30.0)
            assert wait_until(lambda: len(injector.measured) > 10, 30.0), (
                "no joint states from the fake robot"
            )
            yield injector, launcher, fake
    finally:
        injector.destroy_node()
        rclpy.try_shutdown()
        launcher.stop()
        fake.terminate()
        fake.wait(10)


def test_joint_states_that_stop_hold_the_arm_and_it_resumes_without_a_jump(graph):
    injector, launcher, fake = graph
    pids = node_pids(launcher)
    rng = np.random.default_rng(7)

    def act(_: int) -> None:
        injector.send_action([[*rng.uniform(-0.02, 0.02, 3), 0.0, 0.0, 0.0, 1.0]])

    repeat(1.0, 0.2, act)
    assert injector.commands() > 10, "the arm did not move before the fault"
    stale = injector.count("actuation", "stale_joint_states")
    with paused(fake.pid):
        stopped = time.monotonic()
        repeat(2.5, 0.2, act)
        with injector.lock:  # the timeout, a control period, and a wide margin for a loaded machine
            late = [r for r, *_ in injector.arm if r > stopped + JOINT_STATE_TIMEOUT_S + 1.0]
    assert late == [], f"{len(late)} commands streamed more than 1.5 s after the joint states stopped"
    assert wait_until(lambda: injector.count("actuation", "stale_joint_states") > stale, 5.0)
    assert wait_until(lambda: injector.named("actuation", "joint_states are", "s old; holding"), 3.0)

    resumed = injector.commands()
    repeat(1.5, 0.2, act)
    assert wait_until(lambda: injector.commands() > resumed + 10, 5.0), "the arm did not move again"
    with injector.lock:
        first_after = injector.arm[resumed]
        measured = [m for r, _, m in injector.measured if r < first_after[0]][-1]
    # The first command after the hold starts where the arm is: within the speed limit of it.
    _, _, joints, tfs = first_after
    assert np.max(np.abs(joints - measured)) <= np.pi * tfs + 0.02, (joints, measured, tfs)
    assert injector.violations_since(0) == []
    assert all_alive(launcher, pids), launcher.poll()
