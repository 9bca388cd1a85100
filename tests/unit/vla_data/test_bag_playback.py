"""bag_playback: which topics a replay plays, remaps, play times, and clear errors (no ROS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.stores.ros2_jazzy import builtin_interfaces__msg__Time as Time

from vla_data.bag_playback import BagSource, TimeMap, control_ticks, guess_store, parse_remaps

S = 1_000_000_000


def _header(store, stamp: int, frame: str = "cam"):
    time_type = store.types["builtin_interfaces/msg/Time"]
    return store.types["std_msgs/msg/Header"](
        stamp=time_type(sec=stamp // S, nanosec=stamp % S), frame_id=frame
    )


def write_bag(path: Path, store_id: Stores, storage: str, version: int, messages: list) -> Path:
    """messages: (topic, msgtype, log_ns, message) written with the typestore of ``store_id``."""
    store = get_typestore(store_id)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    # rosbags writes versions 8 and 9; a Humble bag (version 5) is a version-8 file with its metadata
    # marked 5, which also makes the reader fall back to the default (Humble) typestore.
    writer = Writer(path, version=max(version, 8), storage_plugin=plugin)
    writer.open()
    connections = {}
    for topic, msgtype, log_ns, msg in messages:
        if topic not in connections:
            connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
        writer.write(connections[topic], log_ns, store.serialize_cdr(msg, msgtype))
    writer.close()
    if version < 8:
        metadata = path / "metadata.yaml"
        metadata.write_text(metadata.read_text().replace("version: 8", f"version: {version}"))
    return path


def image(store, stamp: int, encoding: str = "rgb8", value: int = 0):
    data = np.full(4 * 6 * 3, value, dtype=np.uint8)
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, stamp), height=4, width=6, encoding=encoding, is_bigendian=0, step=18, data=data
    )


def compressed(store, stamp: int):
    data = np.frombuffer(b"\xff\xd8not-a-real-jpeg\xff\xd9", dtype=np.uint8)
    return store.types["sensor_msgs/msg/CompressedImage"](
        header=_header(store, stamp), format="jpeg", data=data
    )


def string(store, text: str):
    return store.types["std_msgs/msg/String"](data=text)


def camera_bag(path: Path, store_id: Stores, storage: str, version: int, offset_ns: int = 0) -> Path:
    """Two cameras at 10 Hz, an instruction, joint states and a recorded action; log = stamp - offset."""
    store = get_typestore(store_id)
    base = 100 * S
    messages = [("/vla/instruction", "std_msgs/msg/String", base - offset_ns, string(store, "pick it up"))]
    for k in range(5):
        stamp = base + k * S // 10
        messages.append(
            ("/cam/raw", "sensor_msgs/msg/Image", stamp - offset_ns + 2000, image(store, stamp, "bgr8", k))
        )
        messages.append(
            (
                "/cam/jpeg",
                "sensor_msgs/msg/CompressedImage",
                stamp - offset_ns + 3000,
                compressed(store, stamp),
            )
        )
        joints = store.types["sensor_msgs/msg/JointState"](
            header=_header(store, stamp),
            name=["waist"],
            position=np.array([0.1 * k]),
            velocity=np.array([], dtype=np.float64),
            effort=np.array([], dtype=np.float64),
        )
        messages.append(
            ("/wx250s/joint_states", "sensor_msgs/msg/JointState", stamp - offset_ns + 1000, joints)
        )
    messages.append(
        ("/vla/action", "std_msgs/msg/String", base - offset_ns + 5 * S // 10, string(store, "{}"))
    )
    return write_bag(path, store_id, storage, version, sorted(messages, key=lambda m: m[2]))


@pytest.mark.parametrize(
    ("store_id", "storage", "version", "expected_store"),
    [
        (Stores.ROS2_HUMBLE, "sqlite3", 5, Stores.ROS2_HUMBLE),
        (Stores.ROS2_JAZZY, "mcap", 8, Stores.ROS2_KILTED),
        (Stores.ROS2_KILTED, "mcap", 9, Stores.ROS2_KILTED),
        (Stores.ROS2_JAZZY, "sqlite3", 9, Stores.ROS2_KILTED),
    ],
)
def test_reads_bags_of_each_distro_and_storage(tmp_path, store_id, storage, version, expected_store):
    bag = camera_bag(tmp_path / "bag", store_id, storage, version)
    assert guess_store(bag) == expected_store
    with BagSource(bag) as source:
        played = {t.source: t.msgtype for t in source.topics}
        messages = list(source.messages())
    # The recorded action is the reference, never replayed; both cameras and the state are.
    assert played == {
        "/cam/raw": "sensor_msgs/msg/Image",
        "/cam/jpeg": "sensor_msgs/msg/CompressedImage",
        "/vla/instruction": "std_msgs/msg/String",
        "/wx250s/joint_states": "sensor_msgs/msg/JointState",
    }
    assert len(messages) == 16
    assert messages[0].topic.source == "/vla/instruction"
    assert [m.play_ns for m in messages] == sorted(m.play_ns for m in messages)
    raw = [m for m in messages if m.topic.source == "/cam/raw"]
    assert [int(m.message.data[0]) for m in raw] == [0, 1, 2, 3, 4]
    assert raw[0].message.encoding == "bgr8"


def test_guess_store_reads_the_distro_name(tmp_path):
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_JAZZY, "mcap", 9)
    metadata = bag / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("ros_distro: rosbags", "ros_distro: jazzy"))
    assert guess_store(bag) == Stores.ROS2_JAZZY


def test_remap_renames_played_topics(tmp_path):
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_JAZZY, "mcap", 9)
    remaps = parse_remaps(["/cam/raw:=/camera/third_person/image_raw", "/cam/jpeg:=/camera/wrist/image_raw"])
    with BagSource(bag, remaps) as source:
        targets = {t.source: t.target for t in source.topics}
        published = {m.topic.target for m in source.messages()}
    assert targets["/cam/raw"] == "/camera/third_person/image_raw"
    assert targets["/cam/jpeg"] == "/camera/wrist/image_raw"
    assert "/cam/raw" not in published and "/camera/wrist/image_raw" in published


@pytest.mark.parametrize("item", ["/a=/b", "a:=/b", "/a:=", "/a :=/b"])
def test_parse_remaps_rejects_malformed(item):
    with pytest.raises(ValueError, match="expected /OLD:=/NEW"):
        parse_remaps([item])


def test_remap_of_a_topic_not_in_the_bag_is_an_error(tmp_path):
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9)
    with pytest.raises(ValueError, match=r"\['/nope'\] are not in the bag"):
        BagSource(bag, {"/nope": "/camera/x"})


def test_two_topics_on_one_target_is_an_error(tmp_path):
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9)
    with pytest.raises(ValueError, match="several topics would be played"):
        BagSource(bag, {"/cam/raw": "/camera/x", "/cam/jpeg": "/camera/x"})


def test_play_time_follows_stamps_when_the_log_clock_differs(tmp_path):
    # Logged 1000 s after the stamps (another time base): the median offset maps it back.
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9, offset_ns=-1000 * S)
    with BagSource(bag) as source:
        frames = [m for m in source.messages() if m.topic.source == "/cam/raw"]
    for frame in frames:
        stamp = frame.message.header.stamp.sec * S + frame.message.header.stamp.nanosec
        assert stamp <= frame.play_ns < stamp + 1_000_000  # never before its stamp, within 1 ms


def test_time_map_interpolates_over_the_bag_clock(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    clock = store.types["rosgraph_msgs/msg/Clock"]
    messages = [
        ("/clock", "rosgraph_msgs/msg/Clock", 5000 * S + k * S, clock(clock=Time(sec=2 * k, nanosec=0)))
        for k in range(4)
    ]  # the sim ran at twice the wall's speed
    messages.append(("/cam", "sensor_msgs/msg/Image", 5000 * S + S // 2, image(store, 1 * S)))
    bag = write_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9, messages)
    with BagSource(bag) as source:
        assert source.time_map(5000 * S + S // 2) == S
        (frame,) = source.messages()
    assert frame.play_ns == S
    assert TimeMap.from_clock([(0, 10), (10, 30)])(5) == 20
    assert TimeMap.from_offset(7)(3) == 10


def test_bag_without_an_image_topic_is_a_clear_error(tmp_path):
    store = get_typestore(Stores.ROS2_JAZZY)
    bag = write_bag(
        tmp_path / "bag",
        Stores.ROS2_JAZZY,
        "mcap",
        9,
        [("/vla/instruction", "std_msgs/msg/String", 1, string(store, "x"))],
    )
    with pytest.raises(ValueError, match="has no camera topic") as info:
        BagSource(bag)
    assert str(bag) in str(info.value) and "/vla/instruction (std_msgs/msg/String)" in str(info.value)


def test_observation_images_in_the_bag_are_not_cameras(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    messages = [("/vla/observation/primary", "sensor_msgs/msg/Image", 1, image(store, 1))]
    bag = write_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9, messages)
    with pytest.raises(ValueError, match="has no camera topic"):
        BagSource(bag)


def test_unknown_message_type_is_a_clear_error(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("uint8 pixels", "vla_test_msgs/msg/Frame"))
    frame = store.types["vla_test_msgs/msg/Frame"](pixels=7)
    messages = [
        ("/cam", "sensor_msgs/msg/Image", 1, image(store, 1)),
        ("/custom/frame", "vla_test_msgs/msg/Frame", 2, frame),
    ]
    writer = Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    for topic, msgtype, log_ns, msg in messages:
        connection = writer.add_connection(topic, msgtype, typestore=store)
        writer.write(connection, log_ns, store.serialize_cdr(msg, msgtype))
    writer.close()
    # Not asked for: ignored. Asked for by a remap: refused with the type named.
    with BagSource(tmp_path / "bag") as source:
        assert [t.source for t in source.topics] == ["/cam"]
    with pytest.raises(ValueError, match="unknown message type 'vla_test_msgs/msg/Frame'"):
        BagSource(tmp_path / "bag", {"/custom/frame": "/camera/wrist/image_raw"})


def test_a_played_topic_with_the_wrong_type_is_an_error(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    number = store.types["std_msgs/msg/Int32"](data=3)
    messages = [
        ("/cam", "sensor_msgs/msg/Image", 1, image(store, 1)),
        ("/vla/instruction", "std_msgs/msg/Int32", 2, number),
    ]
    bag = write_bag(tmp_path / "bag", Stores.ROS2_KILTED, "mcap", 9, messages)
    with pytest.raises(ValueError, match="'/vla/instruction' has message type 'std_msgs/msg/Int32'"):
        BagSource(bag)


@pytest.mark.parametrize(("storage", "suffix"), [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_truncated_file_is_a_clear_error(tmp_path, storage, suffix):
    bag = camera_bag(tmp_path / "bag", Stores.ROS2_KILTED, storage, 9)
    (data_file,) = bag.glob(f"*{suffix}")
    size = data_file.stat().st_size
    with open(data_file, "r+b") as handle:
        handle.truncate(size // 3)
    with pytest.raises(ValueError, match=data_file.name) as info:
        with BagSource(bag) as source:
            list(source.messages())
    assert str(bag) in str(info.value)


def test_missing_bag_and_metadata_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        BagSource(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metadata.yaml"):
        BagSource(tmp_path / "empty")


def test_control_ticks_step_one_period_on_an_absolute_grid():
    ticks = control_ticks(1_310_000_000, 2_050_000_000, 200_000_000)
    assert ticks[0] == 1_200_000_000
    assert np.all(np.diff(ticks) == 200_000_000)
    assert ticks[-1] >= 2_050_000_000
    with pytest.raises(ValueError, match="must be positive"):
        control_ticks(0, 1, 0)
