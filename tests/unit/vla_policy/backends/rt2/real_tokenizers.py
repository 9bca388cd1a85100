"""Real transformers tokenizer classes built offline from small vocabularies, as their releases build them.

- ``llama``: LlamaTokenizerFast (BPE, byte fallback, Metaspace "▁" prefix); like Llama 2's
  SentencePiece model it has no token holding two digits, so numbers are split into digits.
- ``gemma``: GemmaTokenizer (transformers 5's GemmaTokenizerFast; random_model's builder) plus
  PaliGemma's ``<loc0000>``..``<loc1023>`` and ``<seg000>``..``<seg127>``, added by its processor.
- ``qwen2``: Qwen2TokenizerFast (byte-level BPE, "Ġ" for a space); its pre-tokenizer isolates every
  digit, so the multi-digit tokens in its vocabulary are never used by encoding.
- ``gpt2``: GPT2TokenizerFast (byte-level BPE, numbers kept together by the pre-tokenizer) whose
  merges make mixed pieces: " 128" is "Ġ1" "28".
- ``words``: random_model's word-level tokenizer, every integer 0..255 one token (PaLI-X).
"""

from __future__ import annotations

from tokenizers import pre_tokenizers
from transformers import (
    GPT2TokenizerFast,
    LlamaTokenizerFast,
    PaliGemmaProcessor,
    Qwen2TokenizerFast,
)
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from vla_policy.backends.rt2.random_model import (
    PROMPT_WORDS,
    build_gemma_tokenizer,
    build_word_tokenizer,
    word_merges,
)

DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPIECE_SPACE = "\u2581"
BYTE_SPACE = "\u0120"  # byte-level BPE's picture of the byte 0x20


def llama_tokenizer(exclude: tuple[str, ...] = ()) -> LlamaTokenizerFast:
    """``exclude``: pieces left out of the vocabulary (to test tokenizers that lack them)."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words, merges = word_merges(tuple(PROMPT_WORDS), SPIECE_SPACE)
    pieces += [SPIECE_SPACE, *DIGITS, *LETTERS, *sorted(set("".join(PROMPT_WORDS))), *words]
    pieces = [p for p in dict.fromkeys(pieces) if p not in exclude]
    merges = [(a, b) for a, b in merges if a not in exclude and b not in exclude]
    return LlamaTokenizerFast(vocab={p: i for i, p in enumerate(pieces)}, merges=merges)


def gemma_tokenizer():
    """random_model's Gemma tokenizer with PaliGemma's added tokens (as the PaliGemma processor adds them)."""
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessorPil(), tokenizer=build_gemma_tokenizer()
    )
    return processor.tokenizer


def _byte_level_tokenizer(cls, number_merges: list[tuple[str, str]], **kwargs):
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words, merges = word_merges(tuple(PROMPT_WORDS), BYTE_SPACE)
    merges = number_merges + merges
    pieces = ["<|endoftext|>", *alphabet, *words, *(a + b for a, b in number_merges)]
    return cls(vocab={p: i for i, p in enumerate(dict.fromkeys(pieces))}, merges=merges, **kwargs)


def qwen2_tokenizer() -> Qwen2TokenizerFast:
    # Qwen2's vocabulary holds digit strings too; its pre-tokenizer never lets encoding use them.
    return _byte_level_tokenizer(Qwen2TokenizerFast, [("1", "2"), (BYTE_SPACE, "1"), ("2", "5")])


def gpt2_tokenizer() -> GPT2TokenizerFast:
    pairs = [(a, b) for a in DIGITS for b in DIGITS]  # every two-digit string
    spaced = [(BYTE_SPACE, d) for d in DIGITS]  # "Ġ1"
    return _byte_level_tokenizer(GPT2TokenizerFast, spaced + pairs, eos_token="<|endoftext|>")


BUILDERS = {
    "llama": llama_tokenizer,
    "gemma": gemma_tokenizer,
    "qwen2": qwen2_tokenizer,
    "gpt2": gpt2_tokenizer,
    "words": build_word_tokenizer,
}
