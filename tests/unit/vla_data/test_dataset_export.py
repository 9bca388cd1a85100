"""export_bags on small synthetic bags written with rosbags (no ROS): shapes, time alignment, content."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from vla_common.action_message import encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_data.bag_io import BagWriter
from vla_data.dataset_export import (
    DEFAULT_PROPRIO_JOINTS,
    ExportOptions,
    add_export_parser,
    export_bags,
)

STORE = get_typestore(Stores.ROS2_KILTED)
T = STORE.types
MS = 1_000_000  # nanoseconds per millisecond
HEIGHT, WIDTH = 6, 8
THIRD_PERSON = "/camera/third_person/image_raw"
WRIST = "/camera/wrist/image_raw/compressed"
# Joint states carry more joints than proprio needs, in another order.
JOINT_NAMES = ["right_finger", *reversed(DEFAULT_PROPRIO_JOINTS)]
SPACE = ActionSpace()  # bridge_ee_delta, 7 dims, 0.2 s steps
EPISODES = [  # (start ms, end ms, instruction, step stamps in ms)
    (1000, 3000, "put the carrot on the plate", list(range(1250, 2900, 200))),
    (3500, 5000, "stack the blocks", list(range(3650, 4900, 200))),
]
OUTSIDE_STEP_MS = 3250  # between the episodes
EARLY_STEP_MS = 3450  # an observation from before episode 1 started, received after the start


def _header(stamp_ms: int, frame_id: str = "") -> object:
    sec, msec = divmod(stamp_ms, 1000)
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=msec * MS), frame_id=frame_id
    )


def _cdr(msg: object, msgtype: str) -> bytes:
    return bytes(STORE.serialize_cdr(msg, msgtype))


def _pixels(value: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, np.uint8)


def _third_person(stamp_ms: int, value: int) -> bytes:
    msg = T["sensor_msgs/msg/Image"](
        header=_header(stamp_ms, "third_person"),
        height=HEIGHT,
        width=WIDTH,
        encoding="rgb8",
        is_bigendian=0,
        step=WIDTH * 3,
        data=_pixels(value).reshape(-1),
    )
    return _cdr(msg, "sensor_msgs/msg/Image")


def _wrist(stamp_ms: int, value: int) -> bytes:
    ok, png = cv2.imencode(".png", _pixels(value))  # grey pixels: BGR and RGB are the same
    assert ok
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=_header(stamp_ms, "wrist"), format="rgb8; png compressed bgr8", data=png.reshape(-1)
    )
    return _cdr(msg, "sensor_msgs/msg/CompressedImage")


def _joint_positions(stamp_ms: int) -> dict[str, float]:
    return {name: stamp_ms / 1000 + 10 * i for i, name in enumerate(DEFAULT_PROPRIO_JOINTS)}


def _joint_state(stamp_ms: int) -> bytes:
    positions = {"right_finger": -1.0, **_joint_positions(stamp_ms)}
    msg = T["sensor_msgs/msg/JointState"](
        header=_header(stamp_ms),
        name=JOINT_NAMES,
        position=np.array([positions[n] for n in JOINT_NAMES]),
        velocity=np.zeros(len(JOINT_NAMES)),
        effort=np.zeros(len(JOINT_NAMES)),
    )
    return _cdr(msg, "sensor_msgs/msg/JointState")


def _string(text: str) -> bytes:
    return _cdr(T["std_msgs/msg/String"](data=text), "std_msgs/msg/String")


def _action_row(stamp_ms: int) -> np.ndarray:
    return np.array([stamp_ms / 1000, 0.01, -0.02, 0.0, 0.1, -0.1, 1.0])


def _action(stamp_ms: int) -> bytes:
    chunk = np.stack([_action_row(stamp_ms) + k for k in range(4)])  # only row 0 is executed at the step
    return _string(encode_action_chunk(stamp_ms * MS, SPACE, chunk, policy="test"))


def write_demo_bag(
    path: Path, *, cameras: bool = True, actions: bool = True, episodes: bool = True, extra: bool = True
) -> None:
    """Cameras at 10 Hz (wrist 30 ms later), joints at 50 Hz, actions at 5 Hz received 30 ms late."""
    records: list[tuple[int, str, str, bytes]] = []  # (receive ms, topic, type, cdr)
    if cameras:
        for k in range(50):
            records.append(
                (1001 + 100 * k, THIRD_PERSON, "sensor_msgs/msg/Image", _third_person(1000 + 100 * k, k))
            )
            records.append(
                (1031 + 100 * k, WRIST, "sensor_msgs/msg/CompressedImage", _wrist(1030 + 100 * k, 100 + k))
            )
            # The perception node's output is an Image topic too, but not a camera.
            records.append(
                (
                    1002 + 100 * k,
                    "/vla/observation/third_person",
                    "sensor_msgs/msg/Image",
                    _third_person(1000 + 100 * k, 7),
                )
            )
    for j in range(250):
        records.append(
            (1000 + 20 * j, "/wx250s/joint_states", "sensor_msgs/msg/JointState", _joint_state(1000 + 20 * j))
        )
    steps = [s for _, _, _, episode_steps in EPISODES for s in episode_steps]
    if actions:
        for stamp in [*steps, *([OUTSIDE_STEP_MS, EARLY_STEP_MS] if extra else [])]:
            receive = stamp + 30 if stamp != EARLY_STEP_MS else 3520
            records.append((receive, "/vla/action", "std_msgs/msg/String", _action(stamp)))
    for index, (start, end, instruction, _) in enumerate(EPISODES):
        records.append((start, "/vla/instruction", "std_msgs/msg/String", _string(instruction)))
        if episodes:
            start_event = {
                "event": "start",
                "episode": index,
                "seed": 7 + index,
                "instruction": instruction,
                "stamp_ns": start * MS,
            }
            end_event = {
                "event": "end",
                "episode": index,
                "seed": 7 + index,
                "success": index == 0,
                "steps": 9,
            }
            records.append((start, "/vla/episode", "std_msgs/msg/String", _string(json.dumps(start_event))))
            records.append((end, "/vla/episode", "std_msgs/msg/String", _string(json.dumps(end_event))))
    records.sort(key=lambda r: r[0])
    with BagWriter(path) as bag:
        for _, topic, msgtype, _ in records:
            bag.add_topic(topic, msgtype)
        for receive_ms, topic, _, cdr in records:
            bag.write(topic, receive_ms * MS, cdr)


@pytest.fixture
def demo_bag(tmp_path: Path) -> Path:
    write_demo_bag(tmp_path / "demo")
    return tmp_path / "demo"


def _load(dataset: Path, index: int) -> dict[str, np.ndarray]:
    with np.load(dataset / f"episode_{index:06d}.npz", allow_pickle=False) as npz:
        return dict(npz)


def test_one_sample_per_step_aligned_to_the_newest_frame_and_joint_state(
    demo_bag: Path, tmp_path: Path
) -> None:
    report = export_bags([demo_bag], tmp_path / "dataset")

    assert (report.episodes, report.samples) == (2, sum(len(e[3]) for e in EPISODES))
    assert report.dropped == {"action outside an episode": 1, "observation from before the episode start": 1}
    for index, (_, _, instruction, steps) in enumerate(EPISODES):
        episode = _load(tmp_path / "dataset", index)
        n = len(steps)
        assert episode["images_third_person"].shape == (n, HEIGHT, WIDTH, 3)
        assert episode["images_wrist"].shape == (n, HEIGHT, WIDTH, 3)
        assert episode["images_third_person"].dtype == np.uint8
        assert episode["proprio"].shape == (n, 7) and episode["proprio"].dtype == np.float32
        assert episode["action"].shape == (n, 7) and episode["action"].dtype == np.float32
        np.testing.assert_array_equal(episode["stamp_ns"], np.array(steps) * MS)
        np.testing.assert_allclose(episode["timestamps"], (np.array(steps) - steps[0]) / 1000)
        for i, step in enumerate(steps):
            third_k, wrist_k, joint_ms = (step - 1000) // 100, (step - 1030) // 100, step - (step - 1000) % 20
            assert (episode["images_third_person"][i] == third_k).all(), f"episode {index} step {i}"
            assert (episode["images_wrist"][i] == 100 + wrist_k).all(), f"episode {index} step {i}"
            assert episode["image_stamp_ns_third_person"][i] == (1000 + 100 * third_k) * MS
            assert episode["image_stamp_ns_wrist"][i] == (1030 + 100 * wrist_k) * MS
            assert episode["proprio_stamp_ns"][i] == joint_ms * MS
            expected = [_joint_positions(joint_ms)[name] for name in DEFAULT_PROPRIO_JOINTS]
            np.testing.assert_allclose(episode["proprio"][i], expected, rtol=1e-6)
            np.testing.assert_allclose(episode["action"][i], _action_row(step), rtol=1e-6)
        assert list(episode["instruction"]) == [instruction] * n

    meta = json.loads((tmp_path / "dataset" / "meta.json").read_text())
    assert meta["format"] == "vla_stack/npz_episodes/v1"
    assert meta["fps"] == 5.0
    assert meta["cameras"] == ["third_person", "wrist"]
    assert meta["camera_topics"] == {"third_person": THIRD_PERSON, "wrist": WRIST}
    assert meta["image_shapes"] == {"third_person": [HEIGHT, WIDTH, 3], "wrist": [HEIGHT, WIDTH, 3]}
    assert meta["action_space"]["name"] == "bridge_ee_delta"
    assert meta["action_space"]["dims"] == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    assert meta["proprio_dims"] == list(DEFAULT_PROPRIO_JOINTS)
    assert meta["total_samples"] == report.samples
    assert [e["instruction"] for e in meta["episodes"]] == [e[2] for e in EPISODES]
    assert [e["length"] for e in meta["episodes"]] == [len(e[3]) for e in EPISODES]
    assert [(e["source_episode"], e["seed"], e["success"]) for e in meta["episodes"]] == [
        (0, 7, True),
        (1, 8, False),
    ]


def test_several_bags_make_one_dataset_numbered_in_order(tmp_path: Path) -> None:
    write_demo_bag(tmp_path / "a")
    write_demo_bag(tmp_path / "b", episodes=False, extra=False)  # no episode topic: the bag is one episode
    report = export_bags(
        [tmp_path / "a", tmp_path / "b"], tmp_path / "dataset", ExportOptions(compress=False)
    )
    meta = json.loads((tmp_path / "dataset" / "meta.json").read_text())
    assert report.episodes == 3
    assert [Path(e["source_bag"]).name for e in meta["episodes"]] == ["a", "a", "b"]
    whole_bag = _load(tmp_path / "dataset", 2)
    assert len(whole_bag["action"]) == sum(len(e[3]) for e in EPISODES)
    # The instruction in force changes with the latched topic inside the one long episode.
    assert set(whole_bag["instruction"]) == {e[2] for e in EPISODES}


def test_stale_frames_drop_their_steps(demo_bag: Path, tmp_path: Path) -> None:
    report = export_bags([demo_bag], tmp_path / "dataset", ExportOptions(max_age_s=0.03))
    # third_person frames are 50 ms old at every step: every step is dropped, no episode file is written.
    assert report.samples == 0
    assert report.dropped["camera 'third_person': frame older than max_age_s"] == sum(
        len(e[3]) for e in EPISODES
    )
    assert json.loads((tmp_path / "dataset" / "meta.json").read_text())["episodes"] == []


def test_resize_and_explicit_cameras(demo_bag: Path, tmp_path: Path) -> None:
    options = ExportOptions(camera_topics={"main": THIRD_PERSON}, image_size=(3, 4))
    export_bags([demo_bag], tmp_path / "dataset", options)
    episode = _load(tmp_path / "dataset", 0)
    assert sorted(k for k in episode if k.startswith("images_")) == ["images_main"]
    assert episode["images_main"].shape == (len(EPISODES[0][3]), 3, 4, 3)
    assert (episode["images_main"][0] == 2).all()


def test_a_bag_without_cameras_names_the_bag(tmp_path: Path) -> None:
    write_demo_bag(tmp_path / "nocam", cameras=False)
    with pytest.raises(ValueError, match=r"bag '.*nocam': no camera topic .*under /camera/"):
        export_bags([tmp_path / "nocam"], tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_a_bag_without_actions_names_the_bag_and_topic(tmp_path: Path) -> None:
    write_demo_bag(tmp_path / "noact", actions=False)
    with pytest.raises(ValueError, match=r"bag '.*noact': action topic '/vla/action' is missing"):
        export_bags([tmp_path / "noact"], tmp_path / "dataset")


def test_a_missing_camera_topic_and_joint_are_named(demo_bag: Path, tmp_path: Path) -> None:
    options = ExportOptions(camera_topics={"top": "/camera/top/image_raw"})
    with pytest.raises(
        ValueError, match=r"bag '.*demo': camera 'top' topic '/camera/top/image_raw' is missing"
    ):
        export_bags([demo_bag], tmp_path / "dataset", options)
    options = ExportOptions(proprio_joints=("waist", "gripper"))
    with pytest.raises(ValueError, match=r"/wx250s/joint_states lacks joints \['gripper'\]"):
        export_bags([demo_bag], tmp_path / "dataset", options)


def test_never_overwrites(demo_bag: Path, tmp_path: Path) -> None:
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_bags([demo_bag], tmp_path / "dataset")


def test_options_validate_themselves() -> None:
    with pytest.raises(ValueError, match="camera name 'wrist cam'"):
        ExportOptions(camera_topics={"wrist cam": "/camera/wrist/image_raw"})
    with pytest.raises(ValueError, match="max_age_s 0"):
        ExportOptions(max_age_s=0)


def test_export_command(demo_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vla-stack")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "export",
            str(demo_bag),
            "-o",
            str(tmp_path / "ds"),
            "--camera",
            f"tp={THIRD_PERSON}",
            "--image-size",
            "3x4",
        ]
    )
    assert args.func(args) == 0
    assert f"2 episodes, {sum(len(e[3]) for e in EPISODES)} samples" in capsys.readouterr().out
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["image_shapes"] == {"tp": [3, 4, 3]}
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(demo_bag), "-o", "x", "--image-size", "224"])
    args = parser.parse_args(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "ds2")])
    assert args.func(args) == 2
    assert "has no metadata.yaml" in capsys.readouterr().err
