"""Object slots: one token per object of the scene, read from the image tokens by learned queries.

Not part of the released Octo models. The sim policy learned which colour to go for but not which
of two same-coloured objects is the cube, even with stems pretrained to tell them apart: picking
the named object out of 32 patch tokens was left to the transformer and the language, and
behaviour cloning never made it. Here each of ``object_slots`` learned queries cross-attends to a
timestep's image tokens (every camera, with their positional embeddings) and becomes one token of
the sequence; an auxiliary loss during training (``training.object_localisation.localisation_loss``
on ``locate``) makes slot k say whether object k of the catalogue is in view and where it stands on
the table. The instruction then only has to pick a slot, a fixed identity, instead of a pattern in
the pixels (slot attention, Locatello et al. 2020, with supervised identities as in DETR's queries).
"""

from __future__ import annotations

import torch
from torch import nn


class ObjectSlots(nn.Module):
    """(B, T, n, width) image tokens -> (B, T, slots, width) object tokens."""

    def __init__(self, width: int, slots: int, heads: int, horizon: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, slots, width) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(1, horizon, slots, width) * 0.02)
        self.norm_queries = nn.LayerNorm(width)
        self.norm_tokens = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        # training only: slot k -> presence logit and z-scored table x, y of object k
        self.locate = nn.Linear(width, 3)

    def forward(self, image_tokens: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """``present`` (B, T, n): False for the tokens of an absent camera, which the slots do not
        read (None: all are read)."""
        batch, window, n, width = image_tokens.shape
        tokens = self.norm_tokens(image_tokens.reshape(batch * window, n, width))
        queries = self.queries.expand(batch * window, -1, -1)
        ignore = None if present is None else ~present.reshape(batch * window, n)
        read, _ = self.attention(
            self.norm_queries(queries), tokens, tokens, key_padding_mask=ignore, need_weights=False
        )
        slots = queries + read
        slots = slots + self.mlp(slots)
        return slots.reshape(batch, window, -1, width)
