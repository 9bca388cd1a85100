"""rosbag2 reading and writing without rosbag2_py: a thin layer over the ``rosbags`` library.

The writer takes CDR bytes exactly as rclpy hands them over with ``raw=True`` and stores them
unchanged, so recording never deserialises. Bags are rosbag2 version 9 (MCAP by default, sqlite3 on
request) with ``metadata.yaml`` and embedded message definitions, so ``ros2 bag info``, ``ros2 bag
play`` (Jazzy and later) and Foxglove open them. This module is pure Python: no rclpy.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rosbag2 metadata format 9 is what Jazzy and Kilted write; it stores offered QoS as a YAML list.
BAG_VERSION = 9

PathLike = str | os.PathLike[str]


class BagWriter:
    """Writes serialised (CDR) ROS 2 messages into a new rosbag2 directory.

    Use as a context manager, or call :meth:`close` yourself; until then ``metadata.yaml`` does not
    exist and the storage file has no index. Not thread-safe: callers that write from several
    threads hold a lock around :meth:`write`.
    """

    def __init__(
        self,
        path: PathLike,
        storage: str = "mcap",
        typestore: Stores | Typestore = Stores.ROS2_KILTED,
    ) -> None:
        """Create the bag directory ``path`` (which must not exist yet) and open the storage file."""
        if storage not in STORAGES:
            raise ValueError(f"storage '{storage}' is not supported; use one of {sorted(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag path '{self.path}' exists already; rosbag2 never overwrites")
        self.storage = storage
        self._typestore = get_typestore(typestore) if isinstance(typestore, Stores) else typestore
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, Connection] = {}
        self._counts: dict[str, int] = {}
        self._closed = False

    def add_topic(self, topic: str, msgtype: str, qos_profiles: Sequence[Qos] = ()) -> None:
        """Register ``topic`` with its type (e.g. ``sensor_msgs/msg/Image``) and offered QoS.

        Adding a topic again with the same type does nothing; another type is a ValueError.
        """
        self._ensure_open()
        known = self._connections.get(topic)
        if known is not None:
            if known.msgtype != msgtype:
                raise ValueError(
                    f"topic '{topic}': type '{msgtype}' differs from the recorded type '{known.msgtype}'"
                )
            return
        if msgtype not in self._typestore.fielddefs:
            raise ValueError(f"topic '{topic}': message type '{msgtype}' is unknown to the typestore")
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=list(qos_profiles)
        )
        self._counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        """Whether ``topic`` has been registered with :meth:`add_topic`."""
        return topic in self._connections

    def write(self, topic: str, timestamp_ns: int, cdr_bytes: bytes | memoryview) -> None:
        """Append one serialised message received at ``timestamp_ns`` (nanoseconds)."""
        self._ensure_open()
        connection = self._connections.get(topic)
        if connection is None:
            raise ValueError(f"topic '{topic}' was not added; call add_topic first")
        if timestamp_ns < 0:
            raise ValueError(f"topic '{topic}': timestamp_ns {timestamp_ns} is negative")
        self._writer.write(connection, timestamp_ns, cdr_bytes)
        self._counts[topic] += 1

    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic (topics with none included)."""
        return dict(self._counts)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Write the storage index and ``metadata.yaml``. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise ValueError(f"bag '{self.path}' is closed")

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Close even after an error: what was recorded up to then is still worth keeping.
        self.close()


class ThreadedBagWriter:
    """A BagWriter owned by one background thread; every call from any thread is queued to it.

    sqlite3 connections may only be used by the thread that opened them, and disk writes do not
    belong in executor callbacks: :meth:`write` only enqueues, so it returns in microseconds. The
    queue is unbounded; :meth:`pending` tells how far the disk is behind. A failed write is raised
    again by the next call, never dropped silently.
    """

    def __init__(
        self,
        path: PathLike,
        storage: str = "mcap",
        typestore: Stores | Typestore = Stores.ROS2_KILTED,
    ) -> None:
        """Open the bag on the writer thread; errors opening it are raised here."""
        self.path = Path(path)
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._closed = False
        self._final_counts: dict[str, int] | None = None
        opened: Future[BagWriter] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened, path, storage, typestore), name="bag-writer", daemon=True
        )
        self._thread.start()
        self._bag = opened.result()

    def _run(self, opened: Future[BagWriter], path: PathLike, storage: str, typestore: Any) -> None:
        try:
            bag = BagWriter(path, storage, typestore)
        except BaseException as error:
            opened.set_exception(error)
            return
        opened.set_result(bag)
        while True:
            kind, *args = self._queue.get()
            if kind == "write":
                if self._error is None:
                    try:
                        bag.write(*args)
                    except Exception as error:
                        self._error = error
                continue
            reply: Future[Any] = args[-1]
            try:
                reply.set_result(bag.add_topic(*args[:-1]) if kind == "add" else bag.close())
            except Exception as error:
                reply.set_exception(error)
            if kind == "close":
                return

    def _call(self, kind: str, *args: Any) -> Any:
        if self._closed:
            raise ValueError(f"bag '{self.path}' is closed")
        reply: Future[Any] = Future()
        self._queue.put((kind, *args, reply))
        return reply.result()

    def add_topic(self, topic: str, msgtype: str, qos_profiles: Sequence[Qos] = ()) -> None:
        """As :meth:`BagWriter.add_topic`; waits for the writer thread."""
        self._raise_failed_write()
        self._call("add", topic, msgtype, qos_profiles)

    def write(self, topic: str, timestamp_ns: int, cdr_bytes: bytes | memoryview) -> None:
        """Queue one message (as :meth:`BagWriter.write`); returns without touching the disk."""
        self._raise_failed_write()
        if self._closed:
            raise ValueError(f"bag '{self.path}' is closed")
        self._queue.put(("write", topic, timestamp_ns, cdr_bytes))

    def pending(self) -> int:
        """Messages queued but not yet written (approximate)."""
        return self._queue.qsize()

    def counts(self) -> dict[str, int]:
        """Messages written to disk so far, per topic."""
        return dict(self._final_counts) if self._final_counts is not None else self._bag.counts()

    def close(self) -> dict[str, int]:
        """Write what is queued, finish the bag and stop the thread. Idempotent; returns the counts."""
        if not self._closed:
            self._closed = True
            reply: Future[Any] = Future()
            self._queue.put(("close", reply))
            try:
                reply.result()
            finally:
                self._thread.join()
                self._final_counts = self._bag.counts()
            self._raise_failed_write()
        return self.counts()

    def _raise_failed_write(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing bag '{self.path}' failed: {self._error}") from self._error


def _open_reader(path: PathLike, typestore: Stores | Typestore) -> AnyReader:
    bag = Path(path)
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"bag '{bag}' has no metadata.yaml (not a closed rosbag2 directory)")
    store = get_typestore(typestore) if isinstance(typestore, Stores) else typestore
    return AnyReader([bag], default_typestore=store)


def read_counts(path: PathLike, typestore: Stores | Typestore = Stores.ROS2_KILTED) -> dict[str, int]:
    """Message count per topic, from the bag's metadata."""
    with _open_reader(path, typestore) as reader:
        counts: dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        return counts


def iter_messages(
    path: PathLike,
    topics: Iterable[str] | None = None,
    typestore: Stores | Typestore = Stores.ROS2_KILTED,
) -> Iterator[tuple[str, str, int, Any]]:
    """Yield ``(topic, msgtype, timestamp_ns, message)`` in time order, deserialised with rosbags.

    ``topics`` limits the topics read; a topic named there that is not in the bag is a ValueError.
    Messages are rosbags dataclasses (field names as in ROS), not rclpy message objects.
    """
    with _open_reader(path, typestore) as reader:
        connections = reader.connections
        if topics is not None:
            wanted = set(topics)
            missing = wanted - {c.topic for c in connections}
            if missing:
                raise ValueError(f"topics {sorted(missing)} are not in bag '{path}'")
            connections = [c for c in connections if c.topic in wanted]
        if not connections:
            return  # rosbags reads every connection when given none
        for connection, timestamp_ns, raw in reader.messages(connections=connections):
            yield (
                connection.topic,
                connection.msgtype,
                timestamp_ns,
                reader.deserialize(raw, connection.msgtype),
            )
