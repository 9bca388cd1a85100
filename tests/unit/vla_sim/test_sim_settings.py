"""The sim node's parameters: the episode schedule fixed at start, the pacing changeable."""

from __future__ import annotations

from vla_sim.sim_settings import ROBOT_NAME, build_pacing, sim_parameters


def test_only_the_pacing_changes_at_run_time():
    specs = (ROBOT_NAME, *sim_parameters("wx250s"))
    assert {spec.name for spec in specs if not spec.read_only} == {
        "real_time_factor",
        "camera_noise_sigma",
        "settle_wall_s",
    }
    assert "step_dt_s" not in {spec.name for spec in specs}  # counted in ticks of control_hz


def test_the_default_publishers_to_wait_for_are_in_the_robot_namespace():
    spec = next(spec for spec in sim_parameters("vx300s") if spec.name == "wait_for_publishers")
    assert spec.default == ["/vla/action", "/vx300s/arm_controller/joint_trajectory"]


def test_pacing_from_values():
    values = {spec.name: spec.default for spec in sim_parameters("wx250s")}
    pacing = build_pacing({**values, "real_time_factor": 0.0})
    assert (pacing.real_time_factor, pacing.camera_noise_sigma, pacing.settle_wall_s) == (0.0, 2.0, 0.5)
