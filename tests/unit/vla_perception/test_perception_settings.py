"""The perception node's parameters: cameras fixed at start, frame checks changeable at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vla_common.inbound import MAX_IMAGE_PIXELS
from vla_common.parameters import check_value
from vla_perception.perception_settings import (
    MAX_COMPRESSED_BYTES,
    PARAMETERS,
    build_camera,
    build_frame_checks,
    camera_names,
    camera_parameters,
)

DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}
REPO = Path(__file__).resolve().parents[3]


def test_only_the_frame_checks_change_at_run_time():
    dynamic = {spec.name for spec in PARAMETERS if not spec.read_only}
    assert dynamic == {
        "sync_slop_s",
        "max_image_age_s",
        "max_future_s",
        "frozen_after_s",
        "max_pixels",
        "max_compressed_bytes",
    }
    assert all(spec.read_only for spec in camera_parameters("wrist"))


def test_frame_checks_in_nanoseconds():
    checks = build_frame_checks({**DEFAULTS, "max_image_age_s": 0.25})
    limits = checks.limits
    assert (checks.slop_ns, limits.max_age_ns, limits.max_future_ns, limits.frozen_after_ns) == (
        50_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
    )
    assert (limits.max_pixels, limits.max_compressed_bytes) == (MAX_IMAGE_PIXELS, MAX_COMPRESSED_BYTES)
    assert checks.sync(["a", "b"]).camera_names == ("a", "b")
    assert checks.gate().limits == limits


def test_the_size_limits_in_config_match_the_defaults():
    document = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["perception"][
        "ros__parameters"
    ]
    for spec in PARAMETERS:
        if not spec.read_only:  # every run-time check is listed, with its default
            assert document[spec.name] == spec.default, spec.name
    for spec in camera_parameters("wrist"):
        if spec.name.endswith(".reliability"):
            assert document["wrist"]["reliability"] == spec.default


def test_a_camera_from_its_parameters():
    values = {spec.name: spec.default for spec in camera_parameters("wrist")}
    camera = build_camera("wrist", {**values, "wrist.height": 128, "wrist.transport": "compressed"})
    assert camera.topic == "/camera/wrist/image_raw" and camera.transport == "compressed"
    assert (camera.preprocess.height, camera.preprocess.width) == (128, 256)
    assert camera.reliability == "best_effort"


def test_a_transport_that_is_not_supported_is_named():
    transport = next(spec for spec in camera_parameters("wrist") if spec.name == "wrist.transport")
    with pytest.raises(ValueError, match="parameter 'wrist.transport': 'yuv' is not one of raw, compressed"):
        check_value(transport, "yuv")


def test_no_cameras_is_an_error():
    with pytest.raises(ValueError, match="parameter 'cameras' is empty"):
        camera_names({"cameras": []})
