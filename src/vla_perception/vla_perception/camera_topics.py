"""Why a camera topic brings no frames: its publishers' types and QoS against our subscription (pure).

DDS matches a publisher and a subscription only when their types and QoS agree, and says nothing
otherwise: the camera is simply silent. :func:`silent_camera_reason` turns what the ROS graph knows
about a topic's publishers into a reason that names the publisher and the mismatch, and
:func:`incompatible_qos_reason` words rclpy's incompatible-QoS event for a camera subscription.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class Publisher:
    """One publisher of a topic, as the ROS graph reports it (type as ``pkg/msg/Type``)."""

    node: str
    type_name: str
    reliability: str  # "reliable", "best_effort" or anything else the middleware says
    durability: str = "volatile"


def silent_camera_reason(
    camera: str, topic: str, expected_type: str, reliability: str, publishers: Sequence[Publisher]
) -> str:
    """Why camera ``camera`` (subscribed to ``topic`` as ``expected_type`` with ``reliability``) has
    no frames: no publisher, a publisher of another type, or one whose QoS cannot match ours."""
    if not publishers:
        return f"camera '{camera}': no publisher on {topic}"
    problems = []
    for publisher in publishers:
        if publisher.type_name != expected_type:
            problems.append(
                f"publisher '{publisher.node}' sends {publisher.type_name}, but {camera}.transport expects "
                f"{expected_type}"
            )
        elif reliability == "reliable" and publisher.reliability != "reliable":
            problems.append(
                f"publisher '{publisher.node}' is {publisher.reliability}, but {camera}.reliability is "
                "reliable: incompatible QoS (use best_effort)"
            )
    if problems:
        return f"camera '{camera}' on {topic}: " + "; ".join(problems)
    return f"camera '{camera}': {len(publishers)} publisher(s) on {topic}, none of their frames arrived"


def incompatible_qos_reason(camera: str, topic: str, policy: str, total: int) -> str:
    """The words for rclpy's requested-incompatible-QoS event on camera ``camera``'s subscription.

    ``policy``: the policy kind's name (``RELIABILITY``; rmw's ``RMW_QOS_POLICY_`` prefix dropped).
    """
    policy = policy.removeprefix("RMW_QOS_POLICY_")
    return (
        f"camera '{camera}' on {topic}: incompatible QoS with a publisher (policy {policy}; "
        f"{total} publisher(s) so far); its frames never arrive: check {camera}.reliability"
    )
