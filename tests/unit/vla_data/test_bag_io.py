"""BagWriter / read_counts / iter_messages round trips through rosbags, without ROS."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from vla_data.bag_io import BagWriter, ThreadedBagWriter, iter_messages, read_counts

STORE = get_typestore(Stores.ROS2_KILTED)
String = STORE.types["std_msgs/msg/String"]
Image = STORE.types["sensor_msgs/msg/Image"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]

LATCHED_QOS = Qos(
    history=QosHistory.KEEP_LAST,
    depth=1,
    reliability=QosReliability.RELIABLE,
    durability=QosDurability.TRANSIENT_LOCAL,
    deadline=QosTime(0, 0),
    lifespan=QosTime(0, 0),
    liveliness=QosLiveliness.AUTOMATIC,
    liveliness_lease_duration=QosTime(0, 0),
    avoid_ros_namespace_conventions=False,
)


def _string_cdr(text: str) -> bytes:
    return bytes(STORE.serialize_cdr(String(data=text), "std_msgs/msg/String"))


def _image(index: int, height: int = 6, width: int = 8) -> tuple[np.ndarray, bytes]:
    pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = Image(
        header=Header(stamp=Time(sec=index, nanosec=5), frame_id="wrist"),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=pixels.reshape(-1),
    )
    return pixels, bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def _write_sample_bag(path: Path, storage: str) -> list[np.ndarray]:
    images = []
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic("/instruction", "std_msgs/msg/String", [LATCHED_QOS])
        bag.add_topic("/camera/image", "sensor_msgs/msg/Image")
        bag.write("/instruction", 1_000, _string_cdr("pick up the cube"))
        for i in range(3):
            pixels, cdr = _image(i)
            images.append(pixels)
            bag.write("/camera/image", 2_000 + i, memoryview(cdr))
        bag.write("/instruction", 5_000, _string_cdr("put it down"))
        assert bag.counts() == {"/instruction": 2, "/camera/image": 3}
    return images


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(tmp_path: Path, storage: str) -> None:
    bag_path = tmp_path / "bag"
    images = _write_sample_bag(bag_path, storage)

    assert (bag_path / "metadata.yaml").is_file()
    assert read_counts(bag_path) == {"/instruction": 2, "/camera/image": 3}
    messages = list(iter_messages(bag_path))
    assert [(t, ts) for t, _, ts, _ in messages] == [
        ("/instruction", 1_000),
        ("/camera/image", 2_000),
        ("/camera/image", 2_001),
        ("/camera/image", 2_002),
        ("/instruction", 5_000),
    ]
    assert [m.data for t, _, _, m in messages if t == "/instruction"] == ["pick up the cube", "put it down"]
    decoded = [m for t, _, _, m in messages if t == "/camera/image"]
    for i, (msg, pixels) in enumerate(zip(decoded, images, strict=True)):
        assert (msg.header.stamp.sec, msg.header.frame_id, msg.encoding) == (i, "wrist", "rgb8")
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width, 3), pixels)
    assert {mt for _, mt, _, _ in messages} == {"std_msgs/msg/String", "sensor_msgs/msg/Image"}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_describes_storage_and_qos(tmp_path: Path, storage: str) -> None:
    bag_path = tmp_path / "bag"
    _write_sample_bag(bag_path, storage)

    info = yaml.safe_load((bag_path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (info["version"], info["storage_identifier"], info["message_count"]) == (9, storage, 5)
    assert {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]} == {
        "/instruction": 2,
        "/camera/image": 3,
    }
    with Reader(bag_path) as reader:
        assert reader.message_count == 5
        assert reader.duration == 5_000 - 1_000 + 1
        by_topic = {c.topic: c for c in reader.connections}
        assert by_topic["/instruction"].ext.offered_qos_profiles == [LATCHED_QOS]
        assert by_topic["/camera/image"].ext.offered_qos_profiles == []
        # Definitions are embedded, so readers without our typestore (Foxglove) can decode.
        assert "uint32 height" in by_topic["/camera/image"].msgdef.data
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert [p.suffix for p in bag_path.iterdir() if p.name != "metadata.yaml"] == [suffix]


def test_iter_messages_filters_topics(tmp_path: Path) -> None:
    bag_path = tmp_path / "bag"
    _write_sample_bag(bag_path, "mcap")

    assert [t for t, *_ in iter_messages(bag_path, topics=["/instruction"])] == ["/instruction"] * 2
    assert list(iter_messages(bag_path, topics=[])) == []
    with pytest.raises(ValueError, match="/missing"):
        list(iter_messages(bag_path, topics=["/missing"]))


def test_unknown_type_is_rejected_by_name(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "bag") as bag:
        with pytest.raises(ValueError, match="my_msgs/msg/Unknown"):
            bag.add_topic("/thing", "my_msgs/msg/Unknown")
        assert bag.counts() == {}


def test_topic_errors_name_topic_and_type(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/chatter", "std_msgs/msg/String")
        bag.add_topic("/chatter", "std_msgs/msg/String")  # same type again: no-op
        with pytest.raises(ValueError, match="sensor_msgs/msg/Image.*std_msgs/msg/String"):
            bag.add_topic("/chatter", "sensor_msgs/msg/Image")
        with pytest.raises(ValueError, match="'/other' was not added"):
            bag.write("/other", 1, _string_cdr("x"))
        with pytest.raises(ValueError, match="-5"):
            bag.write("/chatter", -5, _string_cdr("x"))
    assert read_counts(tmp_path / "bag") == {"/chatter": 0}


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    bag = BagWriter(tmp_path / "bag")
    bag.add_topic("/chatter", "std_msgs/msg/String")
    bag.write("/chatter", 10, _string_cdr("hello"))
    bag.close()
    bag.close()
    assert bag.closed
    with pytest.raises(ValueError, match="closed"):
        bag.write("/chatter", 11, _string_cdr("late"))
    assert read_counts(tmp_path / "bag") == {"/chatter": 1}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'zip'"):
        BagWriter(tmp_path / "bag", storage="zip")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        BagWriter(tmp_path / "exists")
    with pytest.raises(FileNotFoundError, match="metadata.yaml"):
        read_counts(tmp_path / "exists")


def test_bag_closes_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/chatter", "std_msgs/msg/String")
        bag.write("/chatter", 10, _string_cdr("kept"))
        raise RuntimeError("boom")
    assert [m.data for *_, m in iter_messages(tmp_path / "bag")] == ["kept"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_threaded_writer_accepts_calls_from_any_thread(tmp_path: Path, storage: str) -> None:
    bag = ThreadedBagWriter(tmp_path / "bag", storage)
    bag.add_topic("/chatter", "std_msgs/msg/String")

    def write_some(offset: int) -> None:
        for i in range(50):
            bag.write("/chatter", offset + i, _string_cdr(f"{offset + i}"))

    writers = [threading.Thread(target=write_some, args=(k * 1000,)) for k in range(3)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert bag.close() == {"/chatter": 150}
    assert bag.close() == {"/chatter": 150}
    stamps = [ts for _, _, ts, _ in iter_messages(tmp_path / "bag")]
    assert sorted(stamps) == [k * 1000 + i for k in range(3) for i in range(50)]
    with pytest.raises(ValueError, match="closed"):
        bag.write("/chatter", 1, _string_cdr("late"))


def test_threaded_writer_reports_errors(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        ThreadedBagWriter(tmp_path / "exists")
    bag = ThreadedBagWriter(tmp_path / "bag")
    with pytest.raises(ValueError, match="my_msgs/msg/Unknown"):
        bag.add_topic("/thing", "my_msgs/msg/Unknown")
    bag.write("/never_added", 1, _string_cdr("x"))  # fails on the writer thread ...
    with pytest.raises(RuntimeError, match="'/never_added' was not added"):
        bag.close()  # ... and is raised by the next call, after the bag is finished
    assert read_counts(tmp_path / "bag") == {}
