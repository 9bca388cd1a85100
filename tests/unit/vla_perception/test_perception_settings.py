"""The perception node's parameters: cameras fixed at start, frame checks changeable at run time."""

from __future__ import annotations

import pytest

from vla_common.parameters import check_value
from vla_perception.perception_settings import (
    PARAMETERS,
    build_camera,
    build_frame_checks,
    camera_names,
    camera_parameters,
)

DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}


def test_only_the_frame_checks_change_at_run_time():
    dynamic = {spec.name for spec in PARAMETERS if not spec.read_only}
    assert dynamic == {"sync_slop_s", "max_image_age_s", "frozen_repeat_limit"}
    assert all(spec.read_only for spec in camera_parameters("wrist"))


def test_frame_checks_in_nanoseconds():
    checks = build_frame_checks({**DEFAULTS, "max_image_age_s": 0.25})
    assert (checks.slop_ns, checks.max_age_ns, checks.frozen_repeat_limit) == (50_000_000, 250_000_000, 30)
    assert checks.sync(["a", "b"]).camera_names == ("a", "b")


def test_a_camera_from_its_parameters():
    values = {spec.name: spec.default for spec in camera_parameters("wrist")}
    camera = build_camera("wrist", {**values, "wrist.height": 128, "wrist.transport": "compressed"})
    assert camera.topic == "/camera/wrist/image_raw" and camera.transport == "compressed"
    assert (camera.preprocess.height, camera.preprocess.width) == (128, 256)


def test_a_transport_that_is_not_supported_is_named():
    transport = next(spec for spec in camera_parameters("wrist") if spec.name == "wrist.transport")
    with pytest.raises(ValueError, match="parameter 'wrist.transport': 'yuv' is not one of raw, compressed"):
        check_value(transport, "yuv")


def test_no_cameras_is_an_error():
    with pytest.raises(ValueError, match="parameter 'cameras' is empty"):
        camera_names({"cameras": []})
