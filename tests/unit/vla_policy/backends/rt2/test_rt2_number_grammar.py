"""The digits number grammar: exact language on hand-made vocabularies, then real tokenizer classes.

The real tokenizers (real_tokenizers.py) are transformers' own Llama, Gemma (PaliGemma), Qwen2 and
GPT-2 classes built offline; every constrained answer is decoded with the tokenizer's own decode()
and parsed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from real_tokenizers import BUILDERS, DIGITS, llama_tokenizer

from vla_policy.backends.rt2.action_text import format_action_text, integer_spellings, parse_action_text
from vla_policy.backends.rt2.grammar import ActionGrammarLogitsProcessor, integer_token_ids
from vla_policy.backends.rt2.number_grammar import NumberGrammar

EOS = 1
SPACE_ID = 20
CHARS = {str(d): 10 + d for d in range(10)} | {" ": SPACE_ID}  # one token per character
SURFACES = {token_id: char for char, token_id in CHARS.items()}
VALID = "1 0 255 7 10 99 100 200"
NUMBERS = NumberGrammar(SURFACES, EOS)  # one token per character: the grammar's language made visible


def _spell(text: str) -> list[int]:
    return [CHARS[char] for char in text]


def _with_last(word: str) -> str:
    return VALID.rsplit(" ", 1)[0] + " " + word


def test_one_token_per_character_spells_exactly_the_valid_integers():
    grammar = NumberGrammar(SURFACES, EOS)
    words = [str(k) for k in range(1000)] + ["00", "01", "007", "0255", ""]
    accepted = {word for word in words if grammar.accepts(_spell(_with_last(word)))}
    assert accepted == {str(k) for k in range(256)}  # in range, no leading zeros
    for first in ("0", "1", "2", "9", "10"):  # the terminate flag is 0 or 1
        assert grammar.accepts(_spell(first + VALID[1:])) == (first in ("0", "1"))
    assert grammar.accepts(_spell(" " + VALID))  # one optional leading space
    for text in (
        "  " + VALID,
        VALID + " ",
        VALID.replace(" ", "  ", 1),
        VALID + " 5",
        VALID.rsplit(" ", 1)[0],
    ):
        assert not grammar.accepts(_spell(text)), text


def _canonical(text: str) -> bool:
    """The oracle: the text parses and is the formatter's own spelling, after at most one space."""
    try:
        parsed = parse_action_text(text)
    except ValueError:
        return False
    return text.removeprefix(" ") == format_action_text(parsed.terminate, parsed.bins)


_NEAR_VALID = st.builds(
    lambda lead, flag, words, separator: lead + separator.join([flag, *words]),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["0", "1", "2", "01", "10"]),
    st.lists(
        st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "007", "0255", ""])),
        min_size=6,
        max_size=8,
    ),
    st.sampled_from([" ", " ", " ", "  "]),
)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(_NEAR_VALID, st.text(alphabet=DIGITS + " ", max_size=40)))
def test_the_grammar_accepts_exactly_the_canonical_answers(text):
    assert NUMBERS.accepts(_spell(text)) == _canonical(text)


def test_end_of_sequence_comes_exactly_after_the_eighth_integer():
    grammar = NumberGrammar(SURFACES, EOS)
    seven = _spell(VALID.rsplit(" ", 1)[0] + " ")
    digit_ids = {d: CHARS[d] for d in DIGITS}
    assert grammar.allowed(grammar.state_after(seven + _spell("2"))) == (*digit_ids.values(), EOS)
    after_25 = grammar.allowed(grammar.state_after(seven + _spell("25")))
    assert after_25 == tuple(digit_ids[d] for d in "012345") + (EOS,)  # 250..255 or stop
    assert grammar.allowed(grammar.state_after(seven + _spell("26"))) == (EOS,)
    assert grammar.allowed(grammar.state_after(seven + _spell("0"))) == (EOS,)
    done = grammar.state_after([*_spell(VALID), EOS])
    assert done == grammar.done and grammar.allowed(done) == (EOS,)
    # mid-answer: a space only after a complete integer, never eos
    middle = grammar.allowed(grammar.state_after(_spell("1 12")))
    assert SPACE_ID in middle and EOS not in middle
    assert grammar.length == 1 + 1 + 7 * 4 + 1  # leading space, flag, 7 x (space + 3 digits), eos


def test_zero_padded_width_and_other_bin_counts():
    padded = NumberGrammar(SURFACES, EOS, integer_spellings(256, width=3))
    assert padded.accepts(_spell("0 007 000 255 010 099 100 200"))
    assert not padded.accepts(_spell("0 7 000 255 010 099 100 200"))
    assert not padded.accepts(_spell("0 256 000 255 010 099 100 200"))
    wide = NumberGrammar(SURFACES, EOS, integer_spellings(1024))
    assert wide.accepts(_spell(_with_last("1023"))) and not wide.accepts(_spell(_with_last("1024")))
    with pytest.raises(ValueError, match="width 2.*at least 3"):
        integer_spellings(256, width=2)


def test_mixed_multi_digit_tokens_and_no_leading_zero_pieces():
    surfaces = SURFACES | {30: "12", 31: " 1", 32: "255", 33: "05", 34: " 25", 35: "5 1", 36: "1 "}
    grammar = NumberGrammar(surfaces, EOS)
    one, two, five, zero = CHARS["1"], CHARS["2"], CHARS["5"], CHARS["0"]
    mixed = [one, 31, 30, 34, five, SPACE_ID, 32, 31, 33, 31, 31, two, SPACE_ID, zero]
    assert grammar.accepts(mixed)
    assert grammar.tokens_to_text(mixed) == "1 112 255 255 105 1 12 0"
    start = grammar.allowed(grammar.start)
    assert 33 not in start  # "05" would be a leading zero
    assert 33 in grammar.allowed(grammar.state_after([CHARS["1"], 31]))  # "1 1" + "05" -> "105"
    assert 35 in grammar.allowed(grammar.state_after([CHARS["0"], 34]))  # "0 25" + "5 1": spans a space
    assert 36 in start  # "1 ": the flag and the space after it
    assert 36 not in grammar.allowed(
        grammar.state_after(_spell(VALID.rsplit(" ", 1)[0] + " "))
    )  # no space at the end


def test_unusable_prefixes_are_pruned_and_an_unspellable_format_is_an_error():
    spellings = (("0", "1"), ("23", "4")) + (("4",),) * 6
    grammar = NumberGrammar({11: "1", 20: " ", 12: "2", 14: "4"}, EOS, spellings)
    assert grammar.allowed(grammar.state_after([11, 20])) == (14,)  # "2" could never become "23"
    with pytest.raises(ValueError, match="cannot spell a complete answer"):
        NumberGrammar({11: "1", 20: " ", 12: "2"}, EOS, (("0", "1"), ("23",)))


def test_foreign_and_disallowed_tokens_are_named():
    grammar = NumberGrammar(SURFACES, EOS)
    with pytest.raises(ValueError, match="token 99 .* is not allowed"):
        grammar.state_after([99])
    with pytest.raises(ValueError, match="word 2 '<id=99>' is not an integer"):
        parse_action_text(grammar.tokens_to_text([*_spell("1 2"), 99, *_spell(" 3 4 5 6 7"), EOS]))


# --- real tokenizer classes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def grammars(tokenizers) -> dict:
    return {name: NumberGrammar.from_tokenizer(t, t.eos_token_id) for name, t in tokenizers.items()}


def _decode(grammar, vocab_size: int, logits) -> list[int]:
    """Decoding through the LogitsProcessor as generate() calls it: argmax of each step's scores."""
    constrain = ActionGrammarLogitsProcessor(grammar, prompt_length=3)
    input_ids = torch.zeros(1, 3, dtype=torch.long)
    for scores in logits:
        next_id = constrain(input_ids, scores[None, :vocab_size]).argmax(-1, keepdim=True)
        input_ids = torch.cat([input_ids, next_id], dim=-1)
        if next_id.item() == grammar.eos_id:
            break
    return input_ids[0, 3:].tolist()


def _parse_decoded(tokenizer, token_ids):
    assert token_ids[-1] == tokenizer.eos_token_id
    return parse_action_text(tokenizer.decode(token_ids, skip_special_tokens=True))


def test_the_tokenizers_split_numbers_as_their_families_do(tokenizers):
    spelled = {
        name: t.convert_ids_to_tokens(t.encode("1 128", add_special_tokens=False))
        for name, t in tokenizers.items()
    }
    assert spelled["llama"] == ["\u2581", "1", "\u2581", "1", "2", "8"]
    assert spelled["gemma"] == ["1", "\u2581", "1", "2", "8"]
    assert spelled["qwen2"] == ["1", "\u0120", "1", "2", "8"]  # the "12" and "Ġ1" merges go unused
    assert spelled["gpt2"] == ["1", "\u01201", "28"]  # mixed pieces
    assert spelled["words"] == ["1", "128"]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_random_logits_decode_to_in_range_actions_with_the_tokenizers_own_decode(tokenizers, grammars, name):
    tokenizer, grammar = tokenizers[name], grammars[name]
    generator = torch.Generator().manual_seed(0)
    seen_bins, terminates = set(), set()
    for _ in range(40):
        logits = torch.randn(grammar.length, len(tokenizer), generator=generator) * 5
        token_ids = _decode(grammar, len(tokenizer), logits)
        parsed = _parse_decoded(tokenizer, token_ids)
        own = parse_action_text(grammar.tokens_to_text(token_ids))
        assert own.terminate == parsed.terminate and own.bins.tolist() == parsed.bins.tolist()
        assert len(token_ids) <= grammar.length
        seen_bins.update(parsed.bins.tolist())
        terminates.add(parsed.terminate)
    assert terminates == {False, True} and len(seen_bins) > 40


@pytest.mark.parametrize("name", ["llama", "gemma", "qwen2", "gpt2"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_logits_give_a_valid_action(tokenizers, grammars, name, data):
    """Property: whatever the scores (ties, NaN, +-inf), the constrained answer parses in range."""
    tokenizer, grammar = tokenizers[name], grammars[name]
    special = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1e30, -1e30])
    elements = st.one_of(st.floats(-1e4, 1e4, width=32), special)
    logits = data.draw(arrays(np.float32, (grammar.length, len(tokenizer)), elements=elements, fill=elements))
    token_ids = _decode(grammar, len(tokenizer), torch.from_numpy(logits))
    parsed = _parse_decoded(tokenizer, token_ids)
    assert parsed.bins.min() >= 0 and parsed.bins.max() <= 255


@pytest.mark.parametrize("name", list(BUILDERS))
@settings(max_examples=30, deadline=None)
@given(terminate=st.booleans(), bins=st.lists(st.integers(0, 255), min_size=7, max_size=7))
def test_the_tokenizers_own_spelling_of_any_answer_is_in_the_grammar(
    tokenizers, grammars, name, terminate, bins
):
    tokenizer, grammar = tokenizers[name], grammars[name]
    text = format_action_text(terminate, np.array(bins))
    token_ids = tokenizer.encode(text, add_special_tokens=False)
    assert grammar.accepts(token_ids)
    assert parse_action_text(grammar.tokens_to_text(token_ids)).bins.tolist() == bins


def test_a_tokenizer_without_a_digit_is_a_clear_error():
    tokenizer = llama_tokenizer(exclude=("7", "<0x37>"))
    with pytest.raises(ValueError, match="no token for the digit '7'"):
        NumberGrammar.from_tokenizer(tokenizer, tokenizer.eos_token_id)


def test_a_tokenizer_without_a_space_token_is_a_clear_error():
    tokenizer = llama_tokenizer(exclude=("\u2581", "<0x20>"))
    with pytest.raises(ValueError, match="no token for the space between integers"):
        NumberGrammar.from_tokenizer(tokenizer, tokenizer.eos_token_id)


def test_a_tokenizer_whose_spelling_the_grammar_cannot_produce_is_a_clear_error():
    # No "▁": encoding falls back to the three bytes of "▁", which decode to "0▁0", not "0 0".
    tokenizer = llama_tokenizer(exclude=("\u2581",))
    with pytest.raises(ValueError, match=r"writes '0 0 0 0 0 0 0 0' as \["):
        NumberGrammar.from_tokenizer(tokenizer, tokenizer.eos_token_id)


@pytest.mark.parametrize("name", ["llama", "gemma", "qwen2"])
def test_number_tokens_mode_refuses_digit_splitting_tokenizers(tokenizers, name):
    with pytest.raises(ValueError, match="no single token for the integer 10 .* needs token_mode 'digits'"):
        integer_token_ids("number_tokens", tokenizers[name].get_vocab())


def test_number_tokens_mode_still_works_with_whole_number_tokens(tokenizers):
    tokenizer = tokenizers["words"]
    ids = integer_token_ids("number_tokens", tokenizer.get_vocab())
    assert tokenizer.convert_ids_to_tokens(list(ids)) == [str(k) for k in range(256)]
