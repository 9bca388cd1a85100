"""QoS profiles used across the stack, named for what they carry."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Cameras: the ROS sensor-data profile (KEEP_LAST 5, BEST_EFFORT, VOLATILE).
CAMERA_QOS = qos_profile_sensor_data

# The instruction is latched: a node that joins late still receives the last one.
LATCHED_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Internal stack topics (observations, actions, commands): reliable, shallow.
RELIABLE_QOS = QoSProfile(
    depth=10,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Episode events must not be missed by late joiners either.
EVENTS_QOS = QoSProfile(
    depth=50,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
