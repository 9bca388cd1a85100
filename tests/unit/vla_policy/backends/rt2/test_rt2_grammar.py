"""Constrained decoding: the grammar's token sets, the LogitsProcessor, and decoding random logits."""

from __future__ import annotations

import re

import pytest
import torch
from real_tokenizers import gemma_tokenizer

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
        (TABLE[:1], EOS, None, "expected n_bins >= 2 integer token ids, got 1"),
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
    with pytest.raises(ValueError, match="needs 'action_token_ids' .256 token ids, one per bin.*has none"):
        integer_token_ids("token_table", {}, None)
    with pytest.raises(ValueError, match="needs 'action_token_ids' .12 token ids.*has 256"):
        integer_token_ids("token_table", {}, TABLE, n_bins=12)
    with pytest.raises(ValueError, match="token_mode .digits. is not one of .*one token per integer"):
        integer_token_ids("digits", {})


def test_a_smaller_table_is_a_grammar_over_fewer_bins():
    grammar = ActionGrammar(TABLE[:12], EOS)
    assert grammar.n_bins == 12 and grammar.allowed(3) == TABLE[:12]
    assert (
        parse_action_text(grammar.tokens_to_text([TABLE[1], *TABLE[5:12], EOS]), n_bins=12).bins.max() == 11
    )


# --- loc_tokens: PaliGemma's <loc0000>..<loc1023>, a token table by name --------------------------


@pytest.fixture(scope="module")
def gemma():
    return gemma_tokenizer()


@pytest.mark.parametrize("n_bins", [256, 1024])
def test_loc_tokens_map_integer_k_to_loc_k(gemma, n_bins):
    ids = integer_token_ids("loc_tokens", gemma.get_vocab(), n_bins=n_bins)
    assert gemma.convert_ids_to_tokens(list(ids)) == [f"<loc{k:04d}>" for k in range(n_bins)]
    grammar = ActionGrammar(ids, gemma.eos_token_id)
    generator = torch.Generator().manual_seed(n_bins)
    for _ in range(20):  # random logits over the real vocabulary, decoded with the tokenizer's own decode
        constrain = ActionGrammarLogitsProcessor(grammar, PROMPT)
        input_ids = torch.zeros(1, PROMPT, dtype=torch.long)
        for _ in range(grammar.length):
            next_id = constrain(input_ids, torch.randn(1, len(gemma), generator=generator)).argmax(
                -1, keepdim=True
            )
            input_ids = torch.cat([input_ids, next_id], dim=-1)
        tokens = input_ids[0, PROMPT:].tolist()
        text = gemma.decode(tokens, skip_special_tokens=True)
        loc_values = [int(v) for v in re.findall(r"<loc(\d{4})>", text)]
        parsed = parse_action_text(grammar.tokens_to_text(tokens), n_bins=n_bins)
        assert loc_values == [int(parsed.terminate), *parsed.bins.tolist()]
        assert tokens[-1] == gemma.eos_token_id and max(loc_values) < n_bins


def test_missing_loc_tokens_and_other_action_token_names(gemma):
    with pytest.raises(ValueError, match="no token '<loc1024>' .1 of the 1025 names"):
        integer_token_ids("loc_tokens", gemma.get_vocab(), n_bins=1025)
    vocab = {f"<act_{k}>": 5000 + k for k in range(256)}  # RT-2-style action tokens by any name
    assert integer_token_ids("loc_tokens", vocab, token_format="<act_{}>") == tuple(range(5000, 5256))
