"""What ``vla-stack replay`` sets on the nodes it launches, and the rate it plays at (pure: no ROS)."""

from __future__ import annotations

import json

import pytest
from params_copy import set_control_hz

from vla_bringup.policies import resolve_policy
from vla_data.bag_playback import PlaySettings, PlayTopic
from vla_data.replay import (
    ReplayOptions,
    camera_transports,
    expected_readers,
    graph_overrides,
    play_settings,
    replay_nodes,
)

PRIMARY = PlayTopic("/cam/a", "/camera/third_person/image_raw", "sensor_msgs/msg/Image")
WRIST = PlayTopic("/cam/b", "/camera/wrist/image_raw", "sensor_msgs/msg/CompressedImage")
STATE = PlayTopic("/sim/privileged_state", "/sim/privileged_state", "std_msgs/msg/String")


@pytest.mark.parametrize("with_actuation", [False, True])
def test_every_launched_node_gets_the_one_control_rate(with_actuation):
    nodes = replay_nodes(with_actuation)
    assert ("actuation" in [n.name for n in nodes]) == with_actuation
    overrides = graph_overrides(ReplayOptions("bag"), [PRIMARY, WRIST, STATE], nodes, 7.5)
    assert set(overrides) == {n.name for n in nodes}
    assert {name: params["control_hz"] for name, params in overrides.items()} == dict.fromkeys(overrides, 7.5)


def test_perception_and_policy_follow_the_bag_and_extra_overrides_come_last():
    options = ReplayOptions(
        "bag", policy="octo", checkpoint="/ckpt", extra_overrides={"policy": {"checkpoint": "/other"}}
    )
    overrides = graph_overrides(options, [PRIMARY, WRIST, STATE], replay_nodes(False), 5.0)
    assert overrides["perception"]["primary.transport"] == "raw"
    assert overrides["perception"]["wrist.transport"] == "compressed"
    assert overrides["policy"]["backend"] == "octo"
    assert overrides["policy"]["checkpoint"] == "/other"
    # A model sees pixels only, even where the bag holds the sim's privileged state.
    assert overrides["policy"]["use_privileged_state"] is False
    scripted = graph_overrides(ReplayOptions("bag"), [PRIMARY, WRIST, STATE], replay_nodes(False), 5.0)
    assert scripted["policy"]["backend"] == "scripted" and scripted["policy"]["use_privileged_state"] is True


def test_a_named_policy_is_resolved_to_its_backend_checkpoint_and_options(tmp_path):
    options = ReplayOptions("bag", policy="octo-sim", checkpoint=str(tmp_path))
    policy = graph_overrides(options, [PRIMARY, WRIST], replay_nodes(False), 5.0)["policy"]
    assert (policy["backend"], policy["checkpoint"]) == ("octo", str(tmp_path))
    assert json.loads(policy["backend_options"])["seed"] == 0
    assert policy["use_privileged_state"] is False


def test_a_policy_that_needs_privileged_state_is_refused_on_a_bag_without_it():
    with pytest.raises(ValueError) as error:
        graph_overrides(ReplayOptions("bag", policy="scripted"), [PRIMARY, WRIST], replay_nodes(False), 5.0)
    message = str(error.value)
    assert "policy 'scripted'" in message and "/sim/privileged_state" in message
    assert "--policy octo-sim" in message


def test_a_camera_the_bag_does_not_feed_is_named():
    with pytest.raises(ValueError, match="camera 'wrist' subscribes '/camera/wrist/image_raw'"):
        camera_transports([PRIMARY])


def test_the_rate_comes_from_control_yaml_unless_the_options_set_one(config_copy):
    set_control_hz(config_copy, 10.0)
    settings = play_settings(ReplayOptions("bag", fast=True, seed=3))
    assert (settings.control_hz, settings.period_ns, settings.fast, settings.seed) == (
        10.0,
        100_000_000,
        True,
        3,
    )
    assert play_settings(ReplayOptions("bag", control_hz=2.0)).period_ns == 500_000_000


def test_play_settings_refuse_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match="control_hz 0"):
        PlaySettings(control_hz=0)
    with pytest.raises(ValueError, match="rate -1"):
        PlaySettings(control_hz=5.0, rate=-1)


JOINTS = PlayTopic("/wx250s/joint_states", "/wx250s/joint_states", "sensor_msgs/msg/JointState")


@pytest.mark.parametrize("with_actuation", [False, True])
def test_the_playback_waits_for_every_node_that_reads_a_played_topic(with_actuation):
    nodes = replay_nodes(with_actuation)
    topics = [PRIMARY, WRIST, STATE, JOINTS]
    readers = expected_readers(topics, nodes, resolve_policy("scripted"))
    assert readers == {
        PRIMARY.target: 1,  # perception
        WRIST.target: 1,
        "/vla/instruction": 2,  # perception and the policy
        "/vla/episode": 3 if with_actuation else 2,  # every node resets on an episode start
        JOINTS.target: 2 if with_actuation else 1,  # the policy (and actuation)
        "/sim/privileged_state": 1,  # the scripted expert acts on it
    }
    # A policy that sees pixels alone does not read the privileged state: nobody to wait for.
    assert expected_readers(topics, nodes, resolve_policy("octo"))["/sim/privileged_state"] == 0
