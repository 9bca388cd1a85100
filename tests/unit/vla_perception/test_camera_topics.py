"""Why a camera topic is silent: no publisher, another message type, or a QoS that cannot match."""

from __future__ import annotations

from vla_perception.camera_topics import Publisher, incompatible_qos_reason, silent_camera_reason

IMAGE = "sensor_msgs/msg/Image"
TOPIC = "/camera/wrist/image_raw"


def test_no_publisher():
    assert silent_camera_reason("wrist", TOPIC, IMAGE, "best_effort", []) == (
        f"camera 'wrist': no publisher on {TOPIC}"
    )


def test_a_publisher_of_another_type_is_named():
    publishers = [Publisher("driver", "sensor_msgs/msg/CompressedImage", "best_effort")]
    assert silent_camera_reason("wrist", TOPIC, IMAGE, "best_effort", publishers) == (
        f"camera 'wrist' on {TOPIC}: publisher 'driver' sends sensor_msgs/msg/CompressedImage, "
        f"but wrist.transport expects {IMAGE}"
    )


def test_a_best_effort_publisher_for_a_reliable_subscription_is_an_incompatible_qos():
    publishers = [Publisher("driver", IMAGE, "best_effort")]
    reason = silent_camera_reason("wrist", TOPIC, IMAGE, "reliable", publishers)
    assert "publisher 'driver' is best_effort, but wrist.reliability is reliable: incompatible QoS" in reason
    # our default best-effort subscription matches a publisher of either reliability
    for reliability in ("best_effort", "reliable"):
        reason = silent_camera_reason(
            "wrist", TOPIC, IMAGE, "best_effort", [Publisher("d", IMAGE, reliability)]
        )
        assert reason == f"camera 'wrist': 1 publisher(s) on {TOPIC}, none of their frames arrived"


def test_the_incompatible_qos_event_in_words():
    assert incompatible_qos_reason("wrist", TOPIC, "RMW_QOS_POLICY_RELIABILITY", 1) == (
        f"camera 'wrist' on {TOPIC}: incompatible QoS with a publisher (policy RELIABILITY; 1 publisher(s) "
        "so far); its frames never arrive: check wrist.reliability"
    )
