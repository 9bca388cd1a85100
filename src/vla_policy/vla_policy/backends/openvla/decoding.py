"""Greedy decoding with a reused static KV cache, prompt-length buckets and an optional compiled step.

A ``StaticCache`` has a fixed length, so compiled graphs (and CUDA graphs) can be replayed instead
of rebuilt; allocating one per call, or feeding prompts of every length, throws that away. Here:

- The multimodal sequence [BOS, P patches, T - 1 prompt tokens] (length S = P + T) is right-padded
  to ``L = P + bucket(T)`` with zero embeddings, ``bucket(T)`` the smallest of ``PROMPT_BUCKETS``
  that holds T. The padded slots S..L-1 are masked out as keys for every later query (attention
  mask 0), so the real tokens see exactly the unpadded sequence; the pad queries attend to the real
  prefix (never an empty row, so no NaN). The first action token is read at position S - 1.
- New token k (1-based) is written to cache slot L + k - 1 with RoPE position S + k - 1: the slot is
  the cache's own counter, the position is given explicitly.
- One ``StaticCache`` of L + max_new_tokens slots per (batch size, bucket), allocated at first use
  and ``reset()`` before each later use, never re-created; so is the attention-mask buffer.
- ``compile`` wraps only the one-token decode step (launch-bound, ``max_new_tokens - 1`` calls per
  inference) in ``torch.compile`` (``reduce-overhead``, i.e. CUDA graphs, with inductor on CUDA);
  the prefill is one compute-bound forward and stays eager. One graph per bucket.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import StaticCache

PROMPT_BUCKETS = (32, 64, 128, 256, 512, 1024)  # prompt tokens (BOS included) a sequence is padded to
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")  # torch.compile backends; True means inductor


def prompt_bucket(prompt_tokens: int, buckets: tuple[int, ...] = PROMPT_BUCKETS) -> int:
    """The smallest bucket holding ``prompt_tokens``; a longer prompt is an error naming both."""
    for bucket in buckets:
        if prompt_tokens <= bucket:
            return bucket
    raise ValueError(
        f"OpenVLA prompt of {prompt_tokens} tokens is longer than the largest static-cache bucket "
        f"{buckets[-1]}; shorten the instruction or use cache 'dynamic'"
    )


def compile_settings(compile: bool | str, device: str) -> tuple[str, str] | None:
    """(torch.compile backend, mode) for the option ``compile``; None when it is off.

    ``True`` is inductor; on CUDA inductor runs in ``reduce-overhead`` mode (CUDA graphs).
    ``aot_eager`` / ``eager`` trace the same graphs without generating code (quick checks on a CPU).
    """
    if compile is False or compile is None:
        return None
    backend = "inductor" if compile is True else compile
    if backend not in COMPILE_BACKENDS:
        raise ValueError(
            f"openvla: compile '{compile}' is not one of True, False, {', '.join(COMPILE_BACKENDS)}"
        )
    cuda_graphs = backend == "inductor" and str(device).startswith("cuda")
    return backend, "reduce-overhead" if cuda_graphs else "default"


class StaticDecoder:
    """Greedy decoding of a LlamaForCausalLM from input embeddings, with reused per-bucket caches."""

    def __init__(
        self,
        language_model: Any,
        compile: bool | str = False,
        device: str = "cpu",
        buckets: tuple[int, ...] = PROMPT_BUCKETS,
    ) -> None:
        self.language_model = language_model
        self.buckets = tuple(sorted(buckets))
        self.caches: dict[tuple[int, int], StaticCache] = {}  # (batch, padded length L) -> cache
        self._masks: dict[tuple[int, int], torch.Tensor] = {}
        settings = compile_settings(compile, device)
        self.compiled = settings is not None
        self._step = self._decode_step
        if settings is not None:
            backend, mode = settings
            options = {"mode": mode} if backend == "inductor" else {}
            self._step = torch.compile(self._decode_step, backend=backend, dynamic=False, **options)

    def cache_for(self, batch: int, length: int) -> StaticCache:
        """The cache for (batch, padded length); created once, reset before every reuse."""
        key = (batch, length)
        cache = self.caches.get(key)
        if cache is None:
            cache = StaticCache(config=self.language_model.config, max_cache_len=length)
            self.caches[key] = cache
        else:
            cache.reset()
        return cache

    def _mask(self, batch: int, padded: int, real: int, total: int, device: Any) -> torch.Tensor:
        """[B, total] bool: the real prefix and the new tokens are visible, pad slots real..padded-1 not."""
        mask = self._masks.get((batch, total))
        if mask is None:
            mask = self._masks[(batch, total)] = torch.ones(batch, total, dtype=torch.bool, device=device)
        mask.fill_(True)
        mask[:, real:padded] = False
        return mask

    def _next_token(self, cache: StaticCache, mask: torch.Tensor, keep: Any, **inputs: Any) -> torch.Tensor:
        """argmax of the logits at the position(s) ``keep`` (an int: the last ones; a tensor: those)."""
        logits = self.language_model(
            **inputs, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=keep
        )
        return logits.logits[:, -1].argmax(dim=-1)

    def _decode_step(
        self, token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor, cache: StaticCache
    ) -> torch.Tensor:
        return self._next_token(cache, mask, 1, input_ids=token, position_ids=position)

    @torch.inference_mode()
    def __call__(self, embeds: torch.Tensor, prompt_tokens: int, max_new_tokens: int) -> torch.Tensor:
        """Greedy tokens [B, max_new_tokens] after ``embeds`` [B, S, D] = [BOS, P patches, the prompt
        after BOS], ``prompt_tokens`` = T the prompt's token count with BOS (S = P + T)."""
        batch, real, width = embeds.shape
        padded = real - prompt_tokens + prompt_bucket(prompt_tokens, self.buckets)
        total = padded + max_new_tokens
        limit = self.language_model.config.max_position_embeddings
        if real + max_new_tokens > limit:
            raise ValueError(
                f"OpenVLA sequence of {real} + {max_new_tokens} tokens exceeds the model's {limit} positions"
            )
        cache = self.cache_for(batch, total)
        mask = self._mask(batch, padded, real, total, embeds.device)
        inputs = torch.cat([embeds, embeds.new_zeros(batch, padded - real, width)], dim=1)
        positions = torch.arange(padded, device=embeds.device)[None].expand(batch, -1)
        last = torch.tensor([real - 1], device=embeds.device)  # the last real position, not a pad
        tokens = [self._next_token(cache, mask, last, inputs_embeds=inputs, position_ids=positions)]
        for k in range(1, max_new_tokens):
            position = torch.full((batch, 1), real + k - 1, device=embeds.device, dtype=torch.long)
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are read below
            token = self._step(tokens[-1][:, None], position, mask, cache)
            tokens.append(token.clone())  # a CUDA-graph output is overwritten by the next replay
        return torch.stack(tokens, dim=1)
