"""Octo's block-wise causal transformer: token groups, the attention mask, a pre-norm ViT encoder.

The sequence is ``[task tokens, t=0 groups, t=1 groups, ...]``. Who attends to whom is decided per
group (Octo's ``AttentionRule``): task tokens attend to the task; observation tokens to the task and
to every observation token at the same or an earlier timestep; a readout group to the task, the
observations at the same or earlier timesteps and its own tokens at the same or earlier timesteps.
No group lists the readouts, so nothing attends to them: they read, never write. Padding
(a pad timestep, a missing camera) removes keys, as flax's attention mask does.

Blocks follow the ViT encoder Octo uses (flax defaults): LayerNorm (eps 1e-6) -> multi-head attention
-> residual; LayerNorm -> Dense -> GELU (tanh approximation) -> Dense -> residual; a final LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PREFIX_TIMESTEP = -1  # task tokens sit before every timestep


@dataclass(frozen=True)
class TokenGroup:
    """A named group of tokens: a prefix (task) or repeated at each timestep (observations, readouts)."""

    name: str  # e.g. "task_language", "obs_primary", "readout_action"
    num_tokens: int  # tokens per timestep (or in the prefix)
    is_prefix: bool  # True for task groups
    attends_to: tuple[str, ...]  # fnmatch patterns of the groups it attends to causally (timestep <=)


def octo_groups(
    task_tokens: dict[str, int], obs_tokens: dict[str, int], readout_tokens: dict[str, int]
) -> list[TokenGroup]:
    """Octo's groups and rules: ``{name: n_tokens}`` per task tokenizer, camera and readout."""
    groups = [TokenGroup(f"task_{n}", k, True, ("task_*",)) for n, k in task_tokens.items()]
    groups += [TokenGroup(f"obs_{n}", k, False, ("task_*", "obs_*")) for n, k in obs_tokens.items()]
    groups += [
        TokenGroup(f"readout_{n}", k, False, ("task_*", "obs_*", f"readout_{n}"))
        for n, k in readout_tokens.items()
    ]
    return groups


def token_layout(groups: list[TokenGroup], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token in sequence order: its group index and its timestep (-1 for prefix tokens)."""
    group_ids, timesteps = [], []
    for index, group in enumerate(groups):
        if group.is_prefix:
            group_ids += [index] * group.num_tokens
            timesteps += [PREFIX_TIMESTEP] * group.num_tokens
    for t in range(window):
        for index, group in enumerate(groups):
            if not group.is_prefix:
                group_ids += [index] * group.num_tokens
                timesteps += [t] * group.num_tokens
    return np.asarray(group_ids, dtype=np.int64), np.asarray(timesteps, dtype=np.int64)


def block_causal_mask(groups: list[TokenGroup], window: int) -> np.ndarray:
    """Boolean (L, L): entry [i, j] is True where token i may attend to token j (before padding)."""
    prefix = [g for g in groups if g.is_prefix]
    for group in prefix:  # a prefix attending to a timestep group would see the future
        leaks = [
            o.name for o in groups if not o.is_prefix and any(fnmatch(o.name, p) for p in group.attends_to)
        ]
        if leaks:
            raise ValueError(f"task group '{group.name}' may not attend to timestep groups {leaks}")
    rules = np.array(
        [[any(fnmatch(other.name, p) for p in group.attends_to) for other in groups] for group in groups]
    )
    group_ids, timesteps = token_layout(groups, window)
    allowed = rules[group_ids][:, group_ids]
    causal = timesteps[None, :] <= timesteps[:, None]
    return allowed & causal


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v and output projections (flax's layout)."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), bias
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, width: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attention = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp_in = nn.Linear(width, mlp_dim)
        self.mlp_out = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.norm2(x)), approximate="tanh"))


class BlockTransformer(nn.Module):
    """Runs the blocks under a boolean attention mask (B, L, L) or (L, L)."""

    def __init__(self, width: int, num_layers: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, num_heads, mlp_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # An additive bias with the dtype's minimum (not -inf) where masked: a row with every key
        # masked then averages uniformly, as flax does, instead of producing NaN.
        bias = torch.zeros(attention_mask.shape, dtype=tokens.dtype, device=tokens.device)
        bias = bias.masked_fill(~attention_mask, torch.finfo(tokens.dtype).min)
        if bias.dim() == 3:
            bias = bias[:, None]  # broadcast over heads
        for block in self.blocks:
            tokens = block(tokens, bias)
        return self.norm(tokens)
