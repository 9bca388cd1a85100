"""Random-weight RT-2-style models (PaliGemma: SigLIP + Gemma) for tests and ``vla-stack bench policy``.

No RT-2 weights are public, so timing and tests use the real architecture with random weights, a
small tokenizer built offline and the Hugging Face PaliGemma processor (which adds PaliGemma's
``<loc0000>``..``<loc1023>`` tokens). The tokenizer follows the token mode (``TOKENIZER_OF_MODE``):
a word-level one where every integer 0..255 is one token (PaLI-X; number_tokens, token_table), or a
Gemma tokenizer (BPE, byte fallback, "▁" for spaces) that splits numbers into digits like
PaliGemma's (digits, loc_tokens). Sizes:

- ``tiny``: 32 px images, 16 patches, width 32, 2 + 2 layers (about 0.1 M parameters; tests);
- ``small``: a SigLIP-S/16-like tower at 224 px + an 8-layer decoder of width 512, 32k vocabulary
  (about 75 M parameters);
- ``base``: SigLIP-B/16 at 224 px (196 patches) + a 12-layer Gemma-style decoder of width 1024
  with a 32k vocabulary (about 0.3 B parameters);
- ``3b``: the PaliGemma-3B architecture (SigLIP So400m/14 at 224 px + Gemma 2B, 257k vocabulary),
  the size of the RT-2 paper's smallest (PaLI-3B) variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    GemmaTokenizer,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from vla_policy.backends.rt2.action_text import N_ACTION_BINS
from vla_policy.backends.rt2.binning import RT1_ACTION_HIGH, RT1_ACTION_LOW, ActionBinning
from vla_policy.backends.rt2.config import TOKEN_MODES, RT2Config

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<image>")
GEMMA_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # GemmaTokenizer's ids 0..4
SPACE_MARKER = "\u2581"  # SentencePiece's "▁"
TOKENIZER_OF_MODE = {
    "number_tokens": "words",
    "token_table": "words",
    "loc_tokens": "gemma",
    "digits": "gemma",
}
PROMPT_WORDS = (
    "q : what action should the robot take to ? a put pick place move open close the red green blue "
    "yellow cube block bowl plate towel spoon carrot eggplant basket drawer in on into of and"
).split()


@dataclass(frozen=True)
class PaliGemmaSize:
    """Architecture hyperparameters of one size (vision tower, then language model)."""

    image_size: int  # square input, pixels
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    text_width: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    text_mlp: int
    vocab_size: int  # 0 = the tokenizer's size (padded to a multiple of 64)


SIZES = {
    "tiny": PaliGemmaSize(32, 8, 32, 2, 2, 64, 32, 2, 2, 1, 16, 64, 0),
    "small": PaliGemmaSize(224, 16, 384, 12, 6, 1536, 512, 8, 8, 1, 64, 2048, 32768),
    "base": PaliGemmaSize(224, 16, 768, 12, 12, 3072, 1024, 12, 8, 1, 128, 4096, 32768),
    "3b": PaliGemmaSize(224, 14, 1152, 27, 16, 4304, 2048, 18, 8, 1, 256, 16384, 257152),
}


def build_word_tokenizer(words: tuple[str, ...] = tuple(PROMPT_WORDS)) -> Any:
    """A lowercase word-level tokenizer: special tokens, the integers 0..255, then ``words``."""
    vocabulary = list(SPECIAL_TOKENS) + [str(k) for k in range(N_ACTION_BINS)]
    vocabulary += [w for w in dict.fromkeys(words) if w not in vocabulary]
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # "Q:" -> "q", ":"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def word_merges(
    words: tuple[str, ...], marker: str = SPACE_MARKER
) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE pieces and merges that build ``marker + word`` letter by letter: "▁" + "w" -> "▁w",
    "▁w" + "h" -> "▁wh", ... for every word (the letters themselves must be in the vocabulary)."""
    pieces, merges = [], []
    for word in dict.fromkeys(words):
        piece = marker
        for char in word:
            merges.append((piece, char))
            piece += char
            pieces.append(piece)
    return pieces, list(dict.fromkeys(merges))


def build_gemma_tokenizer(words: tuple[str, ...] = tuple(PROMPT_WORDS)) -> Any:
    """A small Gemma tokenizer: byte fallback, single digits (numbers are split), "▁word" merges.

    Like PaliGemma's: no token holds two digits or a space and a digit, so "1 128" is "1", "▁",
    "1", "2", "8"; characters outside the vocabulary fall back to byte tokens.
    """
    word_pieces, merges = word_merges(words)
    pieces = list(GEMMA_SPECIAL_TOKENS) + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [SPACE_MARKER, *"0123456789", *sorted(set("abcdefghijklmnopqrstuvwxyz" + "".join(words)))]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces + word_pieces))}
    return GemmaTokenizer(vocab=vocab, merges=merges)


def build_processor(size: PaliGemmaSize, tokenizer: str = "words") -> Any:
    """A PaliGemma processor for ``size`` with the ``tokenizer`` kind "words" or "gemma"."""
    builders = {"words": build_word_tokenizer, "gemma": build_gemma_tokenizer}
    if tokenizer not in builders:
        raise ValueError(f"rt2 tokenizer '{tokenizer}' is unknown; available: {', '.join(builders)}")
    image_processor = SiglipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    image_processor.image_seq_length = (size.image_size // size.patch_size) ** 2
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=builders[tokenizer]())


def build_random_paligemma(
    size: str | PaliGemmaSize = "tiny", seed: int = 0, device: str = "cpu", token_mode: str = "number_tokens"
) -> tuple[Any, Any]:
    """(model, processor): a PaliGemmaForConditionalGeneration with random weights, in eval mode.

    The weights are created on ``device`` (a 3B model initialises in seconds on a GPU); the
    tokenizer is the one ``token_mode`` is tested with (TOKENIZER_OF_MODE).
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"rt2 size '{size}' is unknown; available: {', '.join(SIZES)}")
        size = SIZES[size]
    if token_mode not in TOKENIZER_OF_MODE:
        raise ValueError(f"rt2 token_mode '{token_mode}' is not one of {TOKEN_MODES}")
    processor = build_processor(size, TOKENIZER_OF_MODE[token_mode])
    tokenizer = processor.tokenizer
    vocab_size = size.vocab_size or -(-len(tokenizer) // 64) * 64
    if vocab_size < len(tokenizer):
        raise ValueError(f"rt2 size: vocab_size {vocab_size} is below the tokenizer's {len(tokenizer)}")
    config = PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": size.vision_width,
            "intermediate_size": size.vision_mlp,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.vision_heads,
            "image_size": size.image_size,
            "patch_size": size.patch_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "gemma",
            "hidden_size": size.text_width,
            "intermediate_size": size.text_mlp,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "num_key_value_heads": size.text_kv_heads,
            "head_dim": size.head_dim,
            "vocab_size": vocab_size,
        },
        image_token_index=processor.image_token_id,
        vocab_size=vocab_size,
        projection_dim=size.text_width,
        hidden_size=size.text_width,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = PaliGemmaForConditionalGeneration(config).eval()
    return model, processor


def random_rt2_config(processor: Any, token_mode: str = "number_tokens") -> RT2Config:
    """RT-1 action ranges and gripper convention, 256 bins; in token_table mode the tokenizer's last
    256 ids, in loc_tokens mode <loc0000>..<loc0255>."""
    table = None
    if token_mode == "token_table":  # PaLM-E style: overwrite the last (least used) 256 tokens
        last = len(processor.tokenizer) - 1
        table = tuple(last - k for k in range(N_ACTION_BINS))
    return RT2Config(
        token_mode=token_mode,
        binning=ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "rt1_levels", "rt1"),
        action_token_ids=table,
    )


def save_rt2_checkpoint(directory: str | Path, model: Any, processor: Any, config: RT2Config) -> Path:
    """Write a loadable checkpoint: HF config + safetensors weights, processor files, rt2_config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # safetensors
    processor.save_pretrained(directory)
    config.save(directory)
    return directory


def save_tiny_rt2_checkpoint(directory: str | Path, token_mode: str = "number_tokens", seed: int = 0) -> Path:
    """A tiny random RT-2-style checkpoint (tests, demos without weights)."""
    model, processor = build_random_paligemma("tiny", seed=seed, token_mode=token_mode)
    return save_rt2_checkpoint(directory, model, processor, random_rt2_config(processor, token_mode))
