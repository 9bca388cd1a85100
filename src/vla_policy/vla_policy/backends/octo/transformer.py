"""Octo's block-wise causal transformer: token groups, the attention mask, a pre-norm ViT encoder.

The sequence is ``[task tokens, t=0 groups, t=1 groups, ...]``. Who attends to whom is decided per
group (Octo's ``AttentionRule``): task tokens attend to the task; observation tokens to the task and
to every observation token at the same or an earlier timestep; a readout group to the task, the
observations at the same or earlier timesteps and its own tokens at the same or earlier timesteps.
No group lists the readouts, so nothing attends to them: they read, never write. With Octo 1.5's
``repeat_task_tokens`` each task group appears again in every timestep as ``obs_task_<name>``
(after the observations, before the readouts), an observation group like the others. Padding
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

    name: str  # e.g. "task_language", "obs_primary", "obs_task_language", "readout_action"
    num_tokens: int  # tokens per timestep (or in the prefix)
    is_prefix: bool  # True for task groups
    attends_to: tuple[str, ...]  # fnmatch patterns of the groups it attends to causally (timestep <=)
    repeats_task: bool = False  # a task group repeated at each timestep (padded only with the task)


def octo_groups(
    task_tokens: dict[str, int],
    obs_tokens: dict[str, int],
    readout_tokens: dict[str, int],
    repeat_task_tokens: bool = False,
) -> list[TokenGroup]:
    """Octo's groups and rules: ``{name: n_tokens}`` per task tokenizer, camera and readout; with
    ``repeat_task_tokens`` each task group again per timestep as ``obs_task_<name>`` (OctoTransformer)."""
    observe = ("task_*", "obs_*")
    groups = [TokenGroup(f"task_{n}", k, True, ("task_*",)) for n, k in task_tokens.items()]
    groups += [TokenGroup(f"obs_{n}", k, False, observe) for n, k in obs_tokens.items()]
    if repeat_task_tokens:
        groups += [TokenGroup(f"obs_task_{n}", k, False, observe, True) for n, k in task_tokens.items()]
    groups += [
        TokenGroup(f"readout_{n}", k, False, ("task_*", "obs_*", f"readout_{n}"))
        for n, k in readout_tokens.items()
    ]
    return groups


def token_layout(
    groups: list[TokenGroup], window: int, correct_attention: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per token in sequence order: the group whose rules it follows and its timestep (-1 for prefix
    tokens). ``correct_attention`` False reproduces Octo's ``use_correct_attention=False`` (its
    December 2023 models): the group lookup (``np.searchsorted(cumsum, i, side="left")``) gives the
    first token of every group but the first, in the prefix and in each timestep, the previous
    group's name and rules (e.g. the readout acts as the last observation group's token)."""
    side = "right" if correct_attention else "left"

    def block(members: list[int]) -> np.ndarray:
        counts = np.cumsum([groups[i].num_tokens for i in members])
        position = np.searchsorted(counts, np.arange(counts[-1] if members else 0), side=side)
        return np.asarray(members, dtype=np.int64)[position]

    prefix = block([i for i, g in enumerate(groups) if g.is_prefix])
    step = block([i for i, g in enumerate(groups) if not g.is_prefix])
    group_ids = np.concatenate([prefix, np.tile(step, window)])
    timesteps = np.concatenate(
        [np.full(len(prefix), PREFIX_TIMESTEP), np.repeat(np.arange(window), len(step))]
    )
    return group_ids, timesteps.astype(np.int64)


def block_causal_mask(groups: list[TokenGroup], window: int, correct_attention: bool = True) -> np.ndarray:
    """Boolean (L, L): entry [i, j] is True where token i may attend to token j (before padding);
    ``correct_attention``: see ``token_layout``."""
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
    group_ids, timesteps = token_layout(groups, window, correct_attention)
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
