"""Constrained decoding of RT-2 action text: the token grammars and the LogitsProcessor that enforces them.

The answer is exactly ``N_ACTION_INTEGERS`` integers, the first in {0, 1} (terminate) and the rest in
0..n_bins-1 (256 in RT-2), then end-of-sequence. The checkpoint's ``token_mode`` says how the model
writes an integer:

- ``"number_tokens"`` (PaLI-X): the vocabulary has one token for every integer ("128", "▁128");
- ``"token_table"`` (PaLM-E): rarely used tokens were overwritten; the checkpoint's config lists
  their ids, the id of integer k at position k;
- ``"loc_tokens"``: a token table by name, ``action_token_format`` filled with k: PaliGemma's
  ``<loc0000>``..``<loc1023>`` by default, or any other family of added action tokens;
- ``"digits"``: the integers are written in decimal, one or several tokens each (tokenizers that
  split digits: Llama 2, Gemma/PaliGemma, Qwen2); see :mod:`~vla_policy.backends.rt2.number_grammar`.

The first three are one token per integer (:class:`ActionGrammar`, optionally with a separator
token between integers); digits use the :class:`NumberGrammar` automaton. Both answer
``state_after(tokens)`` and ``allowed(state)``; at each step every token outside the allowed set gets
-inf, so greedy (or sampled) decoding from any model, even a random one, yields text that
:func:`parse_action_text` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from vla_policy.backends.rt2.action_text import N_ACTION_BINS, N_ACTION_INTEGERS, integer_spellings
from vla_policy.backends.rt2.config import DEFAULT_ACTION_TOKEN_FORMAT, SINGLE_TOKEN_MODES, RT2Config
from vla_policy.backends.rt2.number_grammar import NumberGrammar

# How tokenizers spell a whole word: plain, SentencePiece's leading "▁", byte-level BPE's "Ġ".
_WORD_PREFIXES = ("", "\u2581", "\u0120")


@dataclass(frozen=True)
class ActionGrammar:
    """Allowed token ids per decoding step for "t b1 .. b7" + eos, one token per integer.

    The state is the number of tokens generated so far.
    """

    integer_ids: tuple[int, ...]  # token id of integer k at index k (n_bins ids)
    eos_id: int
    separator_id: int | None = None  # a token between integers, where the vocabulary needs one
    steps: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(int(i) for i in self.integer_ids)
        if len(ids) < 2:
            raise ValueError(f"action grammar: expected n_bins >= 2 integer token ids, got {len(ids)}")
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
    def n_bins(self) -> int:
        return len(self.integer_ids)

    @property
    def length(self) -> int:
        """Tokens in a complete answer, eos included (max_new_tokens for generation)."""
        return len(self.steps)

    @property
    def max_token_id(self) -> int:
        return max(max(self.integer_ids), self.eos_id, -1 if self.separator_id is None else self.separator_id)

    def state_after(self, token_ids: Sequence[int]) -> int:
        """The step after the generated ``token_ids``: their count."""
        return len(token_ids)

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
    token_mode: str,
    vocab: Mapping[str, int],
    table: Sequence[int] | None = None,
    *,
    n_bins: int = N_ACTION_BINS,
    token_format: str = DEFAULT_ACTION_TOKEN_FORMAT,
) -> tuple[int, ...]:
    """The ids of the integers 0..n_bins-1 in a one-token-per-integer mode, integer k at index k.

    ``number_tokens`` looks the integers up in ``vocab`` (plain, "▁k" or "Ġk"), ``loc_tokens`` looks
    up ``token_format.format(k)``, ``token_table`` takes the checkpoint's ``table``.
    """
    if token_mode == "token_table":
        if table is None or len(table) != n_bins:
            have = "none" if table is None else f"{len(table)}"
            raise ValueError(
                f"token_mode 'token_table' needs 'action_token_ids' ({n_bins} token ids, one per bin) "
                f"in the rt2 config; it has {have}"
            )
        return tuple(int(i) for i in table)
    if token_mode == "loc_tokens":
        return _named_token_ids(vocab, token_format, n_bins)
    if token_mode != "number_tokens":
        raise ValueError(
            f"token_mode '{token_mode}' is not one of {SINGLE_TOKEN_MODES} (one token per integer)"
        )
    ids = []
    for k in range(n_bins):
        spellings = [prefix + str(k) for prefix in _WORD_PREFIXES]
        found = next((vocab[s] for s in spellings if s in vocab), None)
        if found is None:
            raise ValueError(
                f"token_mode 'number_tokens': the tokenizer has no single token for the integer {k} "
                f"(tried {spellings}); a tokenizer that splits digits needs token_mode 'digits'"
            )
        ids.append(int(found))
    return tuple(ids)


def _named_token_ids(vocab: Mapping[str, int], token_format: str, n_bins: int) -> tuple[int, ...]:
    names = [token_format.format(k) for k in range(n_bins)]
    missing = [name for name in names if name not in vocab]
    if missing:
        present = len(names) - len(missing)
        raise ValueError(
            f"token_mode 'loc_tokens': the tokenizer has no token {missing[0]!r} ({len(missing)} of the "
            f"{n_bins} names {names[0]!r}..{names[-1]!r} are missing, {present} present); PaliGemma "
            "tokenizers have <loc0000>..<loc1023>: lower n_bins or set 'action_token_format'"
        )
    return tuple(int(vocab[name]) for name in names)


def build_grammar(
    config: RT2Config, tokenizer: Any, eos_id: int, separator_id: int | None = None
) -> ActionGrammar | NumberGrammar:
    """The grammar of ``config.token_mode`` over ``tokenizer``'s vocabulary (ValueError if it cannot)."""
    n_bins = config.binning.n_bins
    if config.token_mode == "digits":
        spellings = integer_spellings(n_bins, config.number_width)
        return NumberGrammar.from_tokenizer(tokenizer, eos_id, spellings)
    table = integer_token_ids(
        config.token_mode,
        tokenizer.get_vocab(),
        config.action_token_ids,
        n_bins=n_bins,
        token_format=config.action_token_format,
    )
    return ActionGrammar(table, int(eos_id), separator_id)


class ActionGrammarLogitsProcessor(LogitsProcessor):
    """Masks every token the grammar does not allow in the current state to -inf.

    The state comes from the tokens generated so far (``input_ids`` after the prompt), per row.
    Allowed scores are made finite so that an allowed token always wins, even when a model (random
    weights, low precision) emits -inf or NaN.
    """

    def __init__(self, grammar: ActionGrammar | NumberGrammar, prompt_length: int) -> None:
        self.grammar = grammar
        self.prompt_length = int(prompt_length)
        self._allowed: dict[tuple[int, str], torch.Tensor] = {}  # (state, device) -> allowed ids
        self._checked_vocab_sizes: set[int] = set()

    def _ids(self, state: int, device: torch.device) -> torch.Tensor:
        key = (state, str(device))
        if key not in self._allowed:
            self._allowed[key] = torch.tensor(self.grammar.allowed(state), dtype=torch.long, device=device)
        return self._allowed[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab_size = scores.shape[-1]
        if vocab_size not in self._checked_vocab_sizes:
            if self.grammar.max_token_id >= vocab_size:
                raise ValueError(
                    f"action grammar: token id {self.grammar.max_token_id} is outside the model's "
                    f"vocabulary of {vocab_size}"
                )
            self._checked_vocab_sizes.add(vocab_size)
        constrained = torch.full_like(scores, float("-inf"))
        for row, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            ids = self._ids(self.grammar.state_after(generated), scores.device)
            constrained[row, ids] = torch.nan_to_num(scores[row, ids])
        return constrained
