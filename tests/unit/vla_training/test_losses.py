"""The total of a training step's losses: every auxiliary loss counts, at its weight."""

from __future__ import annotations

import pytest
import torch

from vla_training.losses import ChunkNormalisation, total_loss


def test_the_total_holds_every_loss_at_its_weight():
    weights = {"object": 0.5, "grounding": 0.2}
    losses = {"diffusion": torch.tensor(1.0), "object": torch.tensor(2.0), "grounding": torch.tensor(4.0)}
    assert total_loss(losses, weights).item() == pytest.approx(1.0 + 0.5 * 2.0 + 0.2 * 4.0)
    assert total_loss({"diffusion": torch.tensor(1.0)}, weights).item() == 1.0
    without_object = {k: v for k, v in losses.items() if k != "object"}  # no labelled tick in the batch
    assert total_loss(without_object, weights).item() == pytest.approx(1.0 + 0.2 * 4.0)
    with pytest.raises(ValueError, match=r"no weight for the loss\(es\) \['extra'\]"):
        total_loss({**losses, "extra": torch.tensor(1.0)}, weights)


def test_each_loss_gets_its_gradient_through_the_total():
    parts = {name: torch.tensor(1.0, requires_grad=True) for name in ("diffusion", "object", "grounding")}
    total_loss(parts, {"object": 0.5, "grounding": 0.2}).backward()
    assert [parts[name].grad.item() for name in parts] == pytest.approx([1.0, 0.5, 0.2])


def test_the_chunk_is_normalised_where_the_mask_says():
    normalise = ChunkNormalisation(
        torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]), torch.tensor([True, False])
    )
    assert normalise(torch.tensor([[3.0, 1.0]])).tolist() == [[1.0, 1.0]]  # the gripper stays absolute
