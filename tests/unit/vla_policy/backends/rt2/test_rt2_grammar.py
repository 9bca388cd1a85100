"""Constrained decoding: the grammar's token sets, the LogitsProcessor, and decoding random logits."""

from __future__ import annotations

import pytest
import torch

from vla_policy.backends.rt2.action_text import parse_action_text
from vla_policy.backends.rt2.grammar import ActionGrammar, ActionGrammarLogitsProcessor, integer_token_ids

VOCAB = 600
TABLE = tuple(range(599, 599 - 256, -1))  # PaLM-E style: the last 256 ids, integer k -> 599 - k
EOS, SEPARATOR, PROMPT = 1, 7, 12


def _decode_greedy(grammar: ActionGrammar, generator: torch.Generator, poison: bool = False) -> list[int]:
    """Greedy decoding of random logits through the processor, as generate() would call it."""
    constrain = ActionGrammarLogitsProcessor(grammar, PROMPT)
    input_ids = torch.zeros(1, PROMPT, dtype=torch.long)
    for _ in range(grammar.length):
        scores = torch.randn(1, VOCAB, generator=generator) * 10
        if poison:  # a broken model: NaN and -inf everywhere, +inf on a forbidden token
            scores[0, ::3], scores[0, 1::3], scores[0, 5] = float("nan"), float("-inf"), float("inf")
        next_id = constrain(input_ids, scores).argmax(-1, keepdim=True)
        input_ids = torch.cat([input_ids, next_id], dim=-1)
        if next_id.item() == grammar.eos_id:
            break
    return input_ids[0, PROMPT:].tolist()


@pytest.mark.parametrize("separator", [None, SEPARATOR])
@pytest.mark.parametrize("poison", [False, True])
def test_random_logits_always_decode_to_parseable_text(separator, poison):
    grammar = ActionGrammar(TABLE, EOS, separator)
    generator = torch.Generator().manual_seed(0)
    terminates = set()
    for _ in range(100):
        tokens = _decode_greedy(grammar, generator, poison)
        assert len(tokens) == grammar.length and tokens[-1] == EOS
        parsed = parse_action_text(grammar.tokens_to_text(tokens))
        terminates.add(parsed.terminate)
    if not poison:
        assert terminates == {False, True}


def test_grammar_steps_with_and_without_separator():
    plain = ActionGrammar(TABLE, EOS)
    assert plain.length == 9
    assert plain.allowed(0) == TABLE[:2] and plain.allowed(1) == TABLE and plain.allowed(8) == (EOS,)
    assert plain.allowed(50) == (EOS,)
    spaced = ActionGrammar(TABLE, EOS, SEPARATOR)
    assert spaced.length == 16
    assert spaced.allowed(1) == (SEPARATOR,) and spaced.allowed(2) == TABLE and spaced.allowed(15) == (EOS,)


def test_processor_masks_everything_outside_the_step():
    grammar = ActionGrammar(TABLE, EOS)
    constrain = ActionGrammarLogitsProcessor(grammar, PROMPT)
    out = constrain(torch.zeros(1, PROMPT, dtype=torch.long), torch.zeros(1, VOCAB))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == sorted(TABLE[:2])
    with pytest.raises(ValueError, match="outside the model's vocabulary of 500"):
        constrain(torch.zeros(1, PROMPT, dtype=torch.long), torch.zeros(1, 500))


def test_tokens_to_text_maps_ids_and_exposes_foreign_ones():
    grammar = ActionGrammar(TABLE, EOS, SEPARATOR)
    ids = [TABLE[1], SEPARATOR, TABLE[255], TABLE[0], EOS, TABLE[3]]
    assert grammar.tokens_to_text(ids) == "1 255 0"
    with pytest.raises(ValueError, match="not an integer"):
        parse_action_text(grammar.tokens_to_text([TABLE[0], 3, *TABLE[:6], EOS]))


@pytest.mark.parametrize(
    ("table", "eos", "separator", "message"),
    [
        (TABLE[:255], EOS, None, "expected 256 integer token ids, got 255"),
        ((TABLE[0],) + TABLE[:255], EOS, None, "repeat"),
        (TABLE, TABLE[4], None, "eos token id"),
        (TABLE, EOS, TABLE[9], "separator token id"),
        (TABLE, -1, None, ">= 0"),
    ],
)
def test_invalid_grammar_is_a_clear_error(table, eos, separator, message):
    with pytest.raises(ValueError, match=message):
        ActionGrammar(table, eos, separator)


def test_number_tokens_are_found_in_any_common_spelling():
    vocab = {"<eos>": 1}
    for k in range(256):
        vocab[("\u2581" if k % 2 else "") + str(k)] = 10 + k
    assert integer_token_ids("number_tokens", vocab) == tuple(range(10, 266))
    del vocab["\u2581" + "17"]
    with pytest.raises(ValueError, match="no single token for the integer 17"):
        integer_token_ids("number_tokens", vocab)


def test_token_table_mode_needs_the_table():
    assert integer_token_ids("token_table", {}, TABLE) == TABLE
    with pytest.raises(ValueError, match="action_token_ids"):
        integer_token_ids("token_table", {}, None)
    with pytest.raises(ValueError, match="token_mode 'digits'"):
        integer_token_ids("digits", {})
