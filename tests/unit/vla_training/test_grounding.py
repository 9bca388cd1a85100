"""The auxiliary grounding loss: which ticks it asks, its targets, and the positions the sim gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vla_training.grounding import GroundingTargets, grounding_loss, objects_still_in_place


def chunks(xy_steps_m: list[float], gripper: list[float]) -> np.ndarray:
    actions = np.zeros((len(xy_steps_m), 4, 7), np.float32)
    actions[:, 0, 0] = xy_steps_m
    actions[:, :, 6] = np.asarray(gripper)[:, None]
    return actions


def test_a_grasp_leaves_the_objects_in_place_up_to_the_first_close():
    actions = chunks([0.03, 0.02, 0.01, 0.0, 0.0, 0.01], [1, 1, 1, 0, 0, 1])
    assert objects_still_in_place(actions, "pick_up").tolist() == [True] * 4 + [False] * 2
    never_closed = chunks([0.01] * 3, [1, 1, 1])
    assert objects_still_in_place(never_closed, "stack").all()


def test_a_push_leaves_the_object_in_place_up_to_its_last_fast_run():
    # fast approach, slow descent behind the object, the stroke, settle
    actions = chunks([0.04, 0.035, 0.01, 0.005, 0.04, 0.04, 0.025, 0.0], [0] * 8)
    assert objects_still_in_place(actions, "push").tolist() == [True] * 5 + [False] * 3
    assert objects_still_in_place(chunks([0.01] * 4, [0] * 4), "push").all()


def test_targets_are_z_scored_and_masked_where_undefined_or_moved():
    positions = np.array([[0.2, -0.1, 0.3, 0.1], [0.4, 0.1, math.nan, math.nan]])
    episode_of_tick = np.array([0, 0, 1, 1])
    in_place = np.array([True, False, True, True])
    targets = GroundingTargets(positions, in_place, episode_of_tick)
    assert targets.mask.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    # every defined x, y (movers and destinations) has mean 0 and std 1 after scaling
    np.testing.assert_allclose(targets.mean[:2], [0.3, 0.1 / 3])
    np.testing.assert_allclose(targets.metres(targets.targets[0]), positions[0], atol=1e-6)
    assert np.all(targets.targets[2:, 2:] == 0)  # NaN never reaches the loss
    y, m = targets.batch(np.array([0, 3]))
    assert y.shape == m.shape == (2, 4) and torch.isfinite(y).all()


def test_targets_name_a_missing_mover_and_a_bad_shape():
    with pytest.raises(ValueError, match="episode 1 has no mover position"):
        GroundingTargets(
            np.array([[0.2, 0.0, 0.3, 0.1], [math.nan, 0.0, 0.3, 0.1]]), np.ones(2), np.arange(2)
        )
    with pytest.raises(ValueError, match=r"expected \(episodes, 4\)"):
        GroundingTargets(np.zeros((2, 3)), np.ones(2), np.arange(2))


def test_loss_counts_only_masked_in_values():
    predicted = torch.tensor([[1.0, 1.0, 5.0, 5.0]], requires_grad=True)
    targets = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    loss = grounding_loss(predicted, targets, mask)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert predicted.grad[0, 2:].abs().sum() == 0
    assert grounding_loss(predicted, targets, torch.zeros(1, 4)).item() == 0.0
