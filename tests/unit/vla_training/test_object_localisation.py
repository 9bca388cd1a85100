"""Stem pretraining's pure parts: the loss, the which-is-which metric, the first ticks, the settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_training.demo_dataset import Demonstrations
from vla_training.object_localisation import (
    LocalisationHead,
    ObjectCatalogue,
    StemPretraining,
    first_ticks,
    localisation_loss,
    object_slot_labels,
    unseen_scenes,
    which_is_which,
)


def blank_demos(episode_start: list[int], **per_episode) -> Demonstrations:
    """Demonstrations with blank frames: only the episode layout matters to these tests."""
    n = len(episode_start)
    return Demonstrations(
        cameras=("primary",),
        images={"primary": np.zeros((n, 4, 4, 3), np.uint8)},
        proprio=np.zeros((n, 7), np.float32),
        actions=np.zeros((n, 4, 7), np.float32),
        episode_start=np.array(episode_start),
        instruction_id=np.zeros(n, int),
        instructions=["x"],
        episode_seeds=per_episode.pop("seeds"),
        **per_episode,
    )


def test_localisation_loss_ignores_where_absent_objects_would_be():
    labels = torch.tensor([[[1.0, 0.5, -0.5], [0.0, 0.0, 0.0]]])
    exact = torch.tensor([[[20.0, 0.5, -0.5], [-20.0, 9.0, 9.0]]])  # sure of presence, absent one anywhere
    assert localisation_loss(exact, labels).item() == pytest.approx(0.0, abs=1e-6)
    off = exact.clone()
    off[0, 0, 1] += 1.0  # 1 z-unit off in x on the present object
    assert localisation_loss(off, labels).item() == pytest.approx(1.0, abs=1e-6)
    wrong_presence = exact.clone()
    wrong_presence[0, 1, 0] = 20.0
    assert localisation_loss(wrong_presence, labels).item() > 5.0


def test_which_is_which_counts_each_twin_in_scenes_holding_both():
    true = np.array([[[0.0, 0.0], [0.2, 0.0], [0.4, 0.4]], [[0.0, 0.0], [0.2, 0.0], [0.4, 0.4]]])
    present = np.array([[True, True, True], [True, False, True]])
    right_way = true.copy()
    swapped = true.copy()
    swapped[:, [0, 1]] = true[:, [1, 0]]
    assert which_is_which(right_way, true, present, [(0, 1)]) == (2, 2)  # scene 1 lacks object 1
    assert which_is_which(swapped, true, present, [(0, 1)]) == (0, 2)
    midway = true.copy()
    midway[:, 0] = midway[:, 1] = [0.1, 0.0]  # both at the midpoint: neither nearer its own
    assert which_is_which(midway, true, present, [(0, 1)]) == (0, 2)


def test_first_ticks_take_each_scene_once():
    # episode 2 re-targets episode 1's scene
    demos = blank_demos([0, 0, 0, 3, 3, 5, 5], seeds=[10, 11, 11], families=["pick_up"] * 3)
    np.testing.assert_array_equal(first_ticks(demos, np.array([0, 1, 2]), 2), [0, 1, 3, 4])
    np.testing.assert_array_equal(first_ticks(demos, np.array([2, 0]), 1), [5, 0])


def test_clips_that_start_after_the_reset_give_no_object_labels():
    # episode 1: carry frames, the object already in the gripper
    demos = blank_demos([0, 0, 0, 3, 3, 3], seeds=[10, 11], families=["stack"] * 2, first_ticks=[0, 14])
    catalogue = ObjectCatalogue(
        ("a", "b"), lambda seed, family: np.array([[1.0, 0.1, seed], [0.0, 0.0, 0.0]])
    )
    labels = object_slot_labels(demos, catalogue, 2, 2)
    np.testing.assert_array_equal(labels.mask, [True, True, False, False, False, False])
    np.testing.assert_array_equal(first_ticks(demos, np.array([0, 1]), 2), [0, 1])
    assert demos.starts_at_reset().tolist() == [True, False]


def test_settings_name_the_bad_field():
    assert StemPretraining.from_dict({"minutes": 2, "cameras": ["primary", "wrist"]}).cameras == [
        "primary",
        "wrist",
    ]
    for bad, field in (
        ({"minutes": 0}, "minutes"),
        ({"cameras": []}, "cameras"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"epochs": 3}, "epochs"),
    ):
        with pytest.raises(ValueError, match=f"stem_pretraining.*{field}"):
            StemPretraining.from_dict(bad)


def test_localisation_head_shape():
    head = LocalisationHead(tokens=4, dim=8, proprio_dim=7, objects=8)
    out = head(torch.zeros(3, 4, 8), torch.zeros(3, 7))
    assert out.shape == (3, 8, 3)


def test_unseen_scenes_drop_validation_clips_whose_scene_is_trained_on():
    demos = type("D", (), {"episode_seeds": [10, 11, 11, 12]})()
    np.testing.assert_array_equal(unseen_scenes(demos, [2, 3], [0, 1]), [3])
    assert len(unseen_scenes(demos, [1], [2])) == 0
