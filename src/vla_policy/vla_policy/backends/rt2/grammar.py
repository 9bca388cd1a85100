"""Constrained decoding of RT-2 action text: a token grammar and the LogitsProcessor that enforces it.

The answer is exactly ``N_ACTION_INTEGERS`` integers, the first in {0, 1} (terminate) and the rest in
0..255, optionally separated by a separator token, then end-of-sequence. Integers are single tokens
in both RT-2 variants; only where their ids come from differs (see :func:`integer_token_ids`):

- ``"number_tokens"`` (PaLI-X): the vocabulary has a token for every integer 0..255;
- ``"token_table"`` (PaLM-E): 256 rarely used tokens were overwritten; the checkpoint's config lists
  their ids, the id of integer k at position k.

At each step every token outside the grammar's allowed set gets -inf, so greedy (or sampled)
decoding from any model, even a random one, yields text that :func:`parse_action_text` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

from vla_policy.backends.rt2.action_text import N_ACTION_BINS, N_ACTION_INTEGERS
from vla_policy.backends.rt2.config import TOKEN_MODES

# How tokenizers spell a whole word: plain, SentencePiece's leading "▁", byte-level BPE's "Ġ".
_WORD_PREFIXES = ("", "\u2581", "\u0120")


@dataclass(frozen=True)
class ActionGrammar:
    """Allowed token ids per decoding step for "t b1 .. b7" + eos."""

    integer_ids: tuple[int, ...]  # token id of integer k at index k (256 ids)
    eos_id: int
    separator_id: int | None = None  # a token between integers, where the vocabulary needs one
    steps: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(int(i) for i in self.integer_ids)
        if len(ids) != N_ACTION_BINS:
            raise ValueError(f"action grammar: expected {N_ACTION_BINS} integer token ids, got {len(ids)}")
        if len(set(ids)) != len(ids):
            duplicated = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"action grammar: integer token ids repeat: {duplicated[:8]}")
        specials = {"eos": self.eos_id, "separator": self.separator_id}
        for name, token_id in specials.items():
            if token_id is not None and token_id in ids:
                raise ValueError(f"action grammar: the {name} token id {token_id} is also an integer token")
        if min(ids) < 0 or self.eos_id < 0 or (self.separator_id is not None and self.separator_id < 0):
            raise ValueError("action grammar: token ids must be >= 0")
        steps: list[tuple[int, ...]] = []
        for position in range(N_ACTION_INTEGERS):
            if position > 0 and self.separator_id is not None:
                steps.append((self.separator_id,))
            steps.append(ids[:2] if position == 0 else ids)  # terminate is 0 or 1
        steps.append((self.eos_id,))
        object.__setattr__(self, "integer_ids", ids)
        object.__setattr__(self, "steps", tuple(steps))

    @property
    def length(self) -> int:
        """Tokens in a complete answer, eos included (max_new_tokens for generation)."""
        return len(self.steps)

    @property
    def max_token_id(self) -> int:
        return max(max(self.integer_ids), self.eos_id, -1 if self.separator_id is None else self.separator_id)

    def allowed(self, step: int) -> tuple[int, ...]:
        """Token ids allowed at ``step`` (0-based, after the prompt); only eos after the end."""
        return self.steps[step] if 0 <= step < len(self.steps) else (self.eos_id,)

    def tokens_to_text(self, token_ids: Sequence[int]) -> str:
        """Generated ids -> action text; stops at eos, drops separators, shows foreign ids as <id=N>."""
        integer_of = {token_id: k for k, token_id in enumerate(self.integer_ids)}
        words = []
        for token_id in token_ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            if token_id == self.separator_id:
                continue
            words.append(str(integer_of[token_id]) if token_id in integer_of else f"<id={token_id}>")
        return " ".join(words)


def integer_token_ids(
    token_mode: str, vocab: Mapping[str, int], table: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The 256 ids of the integers 0..255: looked up in ``vocab`` or taken from the checkpoint's table."""
    if token_mode == "token_table":
        if table is None:
            raise ValueError("token_mode 'token_table' needs 'action_token_ids' (256 ids) in the rt2 config")
        return tuple(int(i) for i in table)
    if token_mode != "number_tokens":
        raise ValueError(f"token_mode '{token_mode}' is not one of {TOKEN_MODES}")
    ids = []
    for k in range(N_ACTION_BINS):
        spellings = [prefix + str(k) for prefix in _WORD_PREFIXES]
        found = next((vocab[s] for s in spellings if s in vocab), None)
        if found is None:
            raise ValueError(
                f"token_mode 'number_tokens': the tokenizer has no single token for the integer {k} "
                f"(tried {spellings}); use token_mode 'token_table' with 'action_token_ids'"
            )
        ids.append(int(found))
    return tuple(ids)


class ActionGrammarLogitsProcessor(LogitsProcessor):
    """Masks every token the grammar does not allow at the current step to -inf.

    The step is the number of tokens generated so far (``input_ids`` length minus the prompt's).
    Allowed scores are made finite so that an allowed token always wins, even when a model (random
    weights, low precision) emits -inf or NaN.
    """

    def __init__(self, grammar: ActionGrammar, prompt_length: int) -> None:
        self.grammar = grammar
        self.prompt_length = int(prompt_length)
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def _mask(self, step: int, vocab_size: int, device: torch.device) -> torch.Tensor:
        step = step if 0 <= step < self.grammar.length else self.grammar.length - 1  # eos only
        key = (step, vocab_size, str(device))
        if key not in self._masks:
            if self.grammar.max_token_id >= vocab_size:
                raise ValueError(
                    f"action grammar: token id {self.grammar.max_token_id} is outside the model's "
                    f"vocabulary of {vocab_size}"
                )
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[list(self.grammar.allowed(step))] = True
            self._masks[key] = mask.to(device)
        return self._masks[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[-1] - self.prompt_length
        allowed = self._mask(step, scores.shape[-1], scores.device)
        return torch.where(allowed, torch.nan_to_num(scores), float("-inf"))
