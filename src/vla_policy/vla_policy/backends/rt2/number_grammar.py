"""The number grammar: RT-2 action text spelled in digits, as a token automaton over a real vocabulary.

Tokenizers that split digits (Llama 2, Gemma/PaliGemma, Qwen2) have no token for "128": the answer
"1 128 91 ..." is written digit by digit, "▁" "1" "2" "8" or "Ġ" "1" "2" "8"; other vocabularies
mix digit strings ("12" "8", "▁128"). Decoding is constrained in two layers:

1. a character automaton of the answer's format: an optional leading space, then the 8 integers
   (spelled as :func:`~vla_policy.backends.rt2.action_text.integer_spellings` says: the terminate
   flag 0/1, then bins 0..n_bins-1 without leading zeros unless zero-padded) separated by one space;
2. the token automaton: every vocabulary entry that decodes to digits and spaces only (its text is
   decoded once, after an anchor token, so that a leading space survives decoders that strip one)
   is walked through the character automaton from each state reached at a token boundary. Every
   such state keeps its allowed token ids and their successors; states from which the end cannot be
   reached are dropped, so decoding never gets stuck. End-of-sequence is allowed exactly where the
   8th integer is complete, and nothing else after it.

A decoding step costs a dictionary walk over the tokens generated so far and an index of the scores
with the state's precomputed ids; nothing decodes the vocabulary per step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vla_policy.backends.rt2.action_text import integer_spellings

SPACE = " "
DIGITS = "0123456789"
# Vocabulary entries that may stand for digits and spaces: SentencePiece's "▁", byte-level BPE's "Ġ",
# plain digits, and byte-fallback tokens of a space or a digit. Their real text comes from decoding.
_CANDIDATE = re.compile(r"[\u2581\u0120 0-9]+|<0x(?:20|3[0-9])>")


def _char_automaton(spellings: Sequence[Sequence[str]]) -> tuple[list[dict[str, int]], frozenset[int]]:
    """(edges, final states) of the answer's characters; state 0 is the start.

    One trie of spellings per integer; a complete spelling continues with a space into the next
    integer's trie, the last one is final. The start takes an optional space before the first.
    """
    edges: list[dict[str, int]] = [{}]
    roots = []
    for _ in spellings:
        edges.append({})
        roots.append(len(edges) - 1)
    final = set()
    for position, words in enumerate(spellings):
        for word in words:
            state = roots[position]
            for char in word:
                if char not in edges[state]:
                    edges.append({})
                    edges[state][char] = len(edges) - 1
                state = edges[state][char]
            if position + 1 < len(spellings):
                edges[state][SPACE] = roots[position + 1]
            else:
                final.add(state)
    edges[0] = {SPACE: roots[0], **edges[roots[0]]}  # the leading space is optional
    return edges, frozenset(final)


def _surface_trie(surfaces: Mapping[int, str]) -> tuple[list[dict[str, int]], list[list[int]]]:
    """A character trie of the token texts: (children per node, token ids ending at each node)."""
    children: list[dict[str, int]] = [{}]
    ends: list[list[int]] = [[]]
    for token_id, text in sorted(surfaces.items()):
        node = 0
        for char in text:
            if char not in children[node]:
                children.append({})
                ends.append([])
                children[node][char] = len(children) - 1
            node = children[node][char]
        ends[node].append(token_id)
    return children, ends


def _token_transitions(edges: list[dict[str, int]], surfaces: Mapping[int, str]) -> dict[int, dict[int, int]]:
    """Char state at a token boundary -> {token id: char state after it}, for the states reachable
    from the start; each state walks the character automaton and the trie of token texts together."""
    children, ends = _surface_trie(surfaces)
    transitions: dict[int, dict[int, int]] = {}
    pending = [0]
    while pending:
        state = pending.pop()
        if state in transitions:
            continue
        moves: dict[int, int] = {}
        walk = [(state, 0)]
        while walk:
            char_state, node = walk.pop()
            moves.update((token_id, char_state) for token_id in ends[node])
            walk.extend(
                (edges[char_state][char], child)
                for char, child in children[node].items()
                if char in edges[char_state]
            )
        transitions[state] = moves
        pending.extend(moves.values())
    return transitions


def _digit_texts(surfaces: Mapping[int, str]) -> dict[int, str]:
    """The entries of ``surfaces`` made of digits and spaces only (and not empty)."""
    return {int(i): text for i, text in surfaces.items() if text and set(text) <= set(DIGITS + SPACE)}


class NumberGrammar:
    """Allowed token ids per automaton state for the digit-spelled answer "t b1 .. b7" + eos.

    States are small integers: 0 is the start, ``done`` the state after eos (only eos allowed).
    """

    start = 0

    def __init__(
        self,
        surfaces: Mapping[int, str],
        eos_id: int,
        spellings: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """``surfaces``: token id -> the text it decodes to (in context); entries with other
        characters than digits and spaces are ignored. ``spellings``: see ``integer_spellings``."""
        spellings = integer_spellings() if spellings is None else spellings
        self.eos_id = int(eos_id)
        if self.eos_id < 0:
            raise ValueError(f"number grammar: eos token id must be >= 0, got {eos_id}")
        self.surfaces = {i: text for i, text in _digit_texts(surfaces).items() if i != self.eos_id}
        self.n_bins = len(spellings[-1])
        edges, final = _char_automaton(spellings)
        transitions = _token_transitions(edges, self.surfaces)
        longest = self._longest_to_end(transitions, final)
        if 0 not in longest:
            raise ValueError(
                "number grammar: the vocabulary cannot spell a complete answer "
                f"(tokens with digits and spaces: {len(self.surfaces)})"
            )
        # Renumber the live states (those that can reach the end) 0..n-1, the start first.
        live = sorted(longest, key=lambda s: (s != 0, s))
        number = {char_state: index for index, char_state in enumerate(live)}
        self.done = len(live)
        self._next: list[dict[int, int]] = []
        self._allowed: list[tuple[int, ...]] = []
        for char_state in live:
            moves = {t: number[s] for t, s in transitions[char_state].items() if s in number}
            self._next.append(moves)
            eos = (self.eos_id,) if char_state in final else ()
            self._allowed.append(tuple(sorted(moves)) + eos)
        self._final = frozenset(number[s] for s in final if s in number)
        self.length = longest[0]  # tokens in the longest answer, eos included (max_new_tokens)
        self.max_token_id = max([self.eos_id, *(t for moves in self._next for t in moves)])

    @staticmethod
    def _longest_to_end(transitions: dict[int, dict[int, int]], final: frozenset[int]) -> dict[int, int]:
        """Tokens (eos included) on the longest path from each state that can reach the end."""
        memo: dict[int, int] = {}  # state -> longest path, -1 where the end is unreachable
        visiting: set[int] = set()

        def visit(state: int) -> int:
            if state in memo:
                return memo[state]
            if state in visiting:  # cannot happen: every token consumes characters of a finite answer
                raise RuntimeError(f"number grammar: cycle through state {state}")
            visiting.add(state)
            best = 1 if state in final else -1
            for successor in transitions.get(state, {}).values():
                tail = visit(successor)
                if tail > 0:
                    best = max(best, tail + 1)
            visiting.discard(state)
            memo[state] = best
            return best

        visit(0)
        return {state: length for state, length in memo.items() if length > 0}

    def allowed(self, state: int) -> tuple[int, ...]:
        """Token ids allowed in ``state`` (eos only once the answer is complete or after eos)."""
        return (self.eos_id,) if state == self.done else self._allowed[state]

    def advance(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; ValueError when the grammar does not allow it there."""
        token_id = int(token_id)
        if state == self.done or (token_id == self.eos_id and state in self._final):
            return self.done
        successor = self._next[state].get(token_id)
        if successor is None:
            raise ValueError(
                f"number grammar: token {token_id} ({self.surfaces.get(token_id, 'not digits')!r}) "
                f"is not allowed in state {state}"
            )
        return successor

    def state_after(self, token_ids: Sequence[int]) -> int:
        """The state after the generated ``token_ids`` (ValueError on a token outside the grammar)."""
        state = self.start
        for token_id in token_ids:
            state = self.advance(state, token_id)
        return state

    def accepts(self, token_ids: Sequence[int]) -> bool:
        """Whether ``token_ids`` (without eos) spell a complete answer."""
        try:
            return self.state_after([*token_ids, self.eos_id]) == self.done
        except ValueError:
            return False

    def tokens_to_text(self, token_ids: Sequence[int]) -> str:
        """Generated ids -> answer text; stops at eos, shows ids that are not digits as <id=N>."""
        parts = []
        for token_id in token_ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            parts.append(self.surfaces.get(token_id, f" <id={token_id}> "))
        return "".join(parts)

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, eos_id: int, spellings: Sequence[Sequence[str]] | None = None
    ) -> NumberGrammar:
        """The grammar over a Hugging Face tokenizer's vocabulary, checked against its own spelling.

        Raises ValueError naming what is missing when the tokenizer cannot write the answers (a digit
        or the space without any token) or writes them with tokens the grammar cannot produce.
        """
        spellings = integer_spellings() if spellings is None else spellings
        surfaces = token_surfaces(tokenizer)
        spelled = "".join(_digit_texts(surfaces).values())
        for char in DIGITS + SPACE:
            if char not in spelled:
                name = "the space between integers" if char == SPACE else f"the digit {char!r}"
                looked_for = (
                    "'\u2581', '\u0120', '<0x20>'"
                    if char == SPACE
                    else f"{char!r}, '\u2581{char}', '<0x3{char}>'"
                )
                raise ValueError(
                    f"token_mode 'digits': the tokenizer has no token for {name} (looked for {looked_for} "
                    "and digit strings); use token_mode 'token_table' or 'loc_tokens'"
                )
        grammar = cls(surfaces, eos_id, spellings)
        check_tokenizer_spelling(grammar, tokenizer, spellings)
        return grammar


def token_surfaces(tokenizer: Any) -> dict[int, str]:
    """Token id -> decoded text for the vocabulary entries that may be digits and spaces.

    Each candidate is decoded after an anchor digit token (``decode([anchor, t])`` minus
    ``decode([anchor])``), which keeps the space a SentencePiece "▁" or a byte-level "Ġ" stands for,
    and the spaces a decoder-less tokenizer inserts between tokens.
    """
    candidates = sorted(i for token, i in tokenizer.get_vocab().items() if _CANDIDATE.fullmatch(token))
    if not candidates:
        return {}
    alone = tokenizer.batch_decode([[i] for i in candidates], skip_special_tokens=False)
    anchors = [i for i, text in zip(candidates, alone, strict=True) if len(text) == 1 and text in DIGITS]
    if not anchors:
        raise ValueError(
            "token_mode 'digits': the tokenizer has no single-digit token (looked for '0'..'9' and "
            "their byte-fallback tokens); use token_mode 'token_table' or 'loc_tokens'"
        )
    anchor = anchors[0]
    prefix = tokenizer.decode([anchor], skip_special_tokens=False)
    texts = tokenizer.batch_decode([[anchor, i] for i in candidates], skip_special_tokens=False)
    return {
        i: text[len(prefix) :] for i, text in zip(candidates, texts, strict=True) if text.startswith(prefix)
    }


def check_tokenizer_spelling(
    grammar: NumberGrammar, tokenizer: Any, spellings: Sequence[Sequence[str]]
) -> None:
    """The tokenizer's own encoding of answers holding every integer must be paths of ``grammar``.

    A model learned the tokenizer's spelling; a grammar that cannot produce it (or cannot produce
    some integer at all) would force answers the model never saw. ValueError names the first such.
    """
    n_values = max(len(words) for words in spellings)
    samples = [
        " ".join(words[k % len(words)] for words in spellings) for k in range(n_values)
    ]  # every spelling of every integer appears once at its position
    encoded = tokenizer(samples, add_special_tokens=False)["input_ids"]
    for text, token_ids in zip(samples, encoded, strict=True):
        if not grammar.accepts(token_ids):
            tokens = tokenizer.convert_ids_to_tokens(token_ids)
            raise ValueError(
                f"token_mode 'digits': the tokenizer writes {text!r} as {tokens}, which the number grammar "
                "cannot produce from the vocabulary's digit and space tokens (its decoder must join them "
                "into that text); use token_mode 'number_tokens', 'token_table' or 'loc_tokens'"
            )
