"""RT-2 action text: good answers parse, every malformed one is a ValueError (fuzzed)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_policy.backends.rt2.action_text import ParsedAction, format_action_text, parse_action_text


def test_parses_terminate_and_seven_bins():
    parsed = parse_action_text("0 128 91 241 5 101 127 217")
    assert parsed.terminate is False
    assert parsed.bins.dtype == np.int64
    assert parsed.bins.tolist() == [128, 91, 241, 5, 101, 127, 217]
    assert parse_action_text("1 0 0 0 0 0 0 255").terminate is True


def test_whitespace_around_and_between_is_accepted():
    assert parse_action_text("  0\t1  2 3\n4 5 6 7 ").bins.tolist() == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("0 1 2 3 4 5 6", "expected 8 integers.*got 7"),
        ("0 1 2 3 4 5 6 7 8", "got 9"),
        ("0 1 2 3 4 5 6 x", "word 7 'x' is not an integer"),
        ("0 1 2 3 4 5 6 7.5", "not an integer"),
        ("0 1 2 3 -4 5 6 7", "word 4 '-4' is not an integer"),
        ("0 +1 2 3 4 5 6 7", "not an integer"),
        ("0 1 2 3 4 5 6 \u0663", "not an integer"),  # an Arabic-Indic digit: int() would accept it
        ("0 1 2 3 4 5 6 256", "integer 7 is '256', outside 0..255"),
        ("0 1 2 3 4 5 6 " + "9" * 5000, "outside 0..255"),
        ("2 1 2 3 4 5 6 7", "terminate flag is 2"),
        ("0,1,2,3,4,5,6,7", "got 1 words"),
    ],
)
def test_malformed_text_is_a_clear_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_action_text(text)


@pytest.mark.parametrize("value", [None, b"0 1 2 3 4 5 6 7", 12345678, ["0"] * 8])
def test_non_strings_are_value_errors(value):
    with pytest.raises(ValueError, match="expected a string"):
        parse_action_text(value)


def test_format_and_parse_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        terminate, bins = bool(rng.integers(0, 2)), rng.integers(0, 256, 7)
        parsed = parse_action_text(format_action_text(terminate, bins))
        assert parsed.terminate == terminate and parsed.bins.tolist() == bins.tolist()
    with pytest.raises(ValueError, match="outside 0..255"):
        format_action_text(False, np.array([0, 0, 0, 0, 0, 0, 256]))


def _random_text(rng: np.random.Generator) -> str:
    alphabet = list("0123456789 \t\n-+.,:xA") + ["\u0663", "\u00a0", "\x00", "\ud7ff", "255", "256", "1"]
    kind = rng.integers(0, 3)
    if kind == 0:  # arbitrary characters
        return "".join(rng.choice(alphabet) for _ in range(rng.integers(0, 40)))
    words = [str(v) for v in rng.integers(0, 300, rng.integers(6, 11))]
    if kind == 1:  # near-valid: integers only, some out of range or wrong count
        return " ".join(words)
    position = rng.integers(0, len(words))  # one corrupted word
    words[position] = "".join(rng.choice(alphabet) for _ in range(rng.integers(1, 5)))
    return " ".join(words)


def test_fuzz_never_raises_anything_but_value_error():
    rng = np.random.default_rng(1234)
    parsed_count = 0
    for _ in range(5000):
        text = _random_text(rng)
        try:
            parsed = parse_action_text(text)
        except ValueError as exc:
            assert str(exc)  # every rejection says why
            continue
        parsed_count += 1
        assert isinstance(parsed, ParsedAction)
        words = text.split()
        assert len(words) == 8 and all(w.isascii() and w.isdigit() for w in words)
        assert int(words[0]) in (0, 1) and all(0 <= int(w) <= 255 for w in words[1:])
    assert parsed_count > 0  # the generator also produces valid answers
