"""OpenVLA's inputs and outputs: prompt, tokens, 6-channel pixels, and action de-tokenisation.

- Prompt: ``In: What action should the robot take to {instruction.lower()}?\\nOut:``, tokenised with
  BOS first; the empty SentencePiece token (29871, "▁") is appended when the prompt does not end in
  it, as the reference ``predict_action`` does.
- Pixels ("resize-naive"): bicubic resize to S x S (no crop), x / 255, then DINOv2's ImageNet
  normalisation (x - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), stacked
  on channels with SigLIP's (x - 0.5) / 0.5: [6, S, S].
- Actions: token t -> bin clip(V - t - 1, 0, n_bins - 2) -> bin centre in [-1, 1] -> unnormalised
  0.5 (a + 1)(q99 - q01) + q01 where mask (``vla_common.action_space``).
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from PIL import Image

from vla_common.action_space import NormStats, decode_bins, openvla_bin_from_token, unnormalize

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def build_prompt(instruction: str) -> str:
    """The exact OpenVLA prompt for one instruction (lower-cased, as the reference does)."""
    return PROMPT_TEMPLATE.format(instruction=instruction.lower())


def prompt_token_ids(tokenizer: Any, instruction: str, suffix_token_id: int = 29871) -> list[int]:
    """[BOS] + tokens(prompt) (+ suffix_token_id when the prompt's last token is not it).

    The text is encoded without special tokens and BOS is prepended here, so a tokenizer.json with or
    without a BOS post-processor gives the same ids.
    """
    if tokenizer.bos_token_id is None:
        raise ValueError("OpenVLA tokenizer: no bos_token_id (tokenizer_config.json 'bos_token')")
    ids = [int(tokenizer.bos_token_id)] + list(
        tokenizer(build_prompt(instruction), add_special_tokens=False).input_ids
    )
    if ids[-1] != suffix_token_id:
        ids.append(suffix_token_id)
    return ids


def resize_naive(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> size x size, bicubic (PIL, as torchvision's resize of a PIL image), no crop."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image: expected HxWx3 uint8 RGB, got shape {list(image.shape)} dtype {image.dtype}"
        )
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), resample=Image.Resampling.BICUBIC))


def pixel_values(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> [6, size, size] float32: DINOv2-normalised channels, then SigLIP's."""
    x = resize_naive(image, size).astype(np.float32) / 255.0
    dino = (x - np.asarray(DINO_MEAN, np.float32)) / np.asarray(DINO_STD, np.float32)
    siglip = (x - np.asarray(SIGLIP_MEAN, np.float32)) / np.asarray(SIGLIP_STD, np.float32)
    return np.concatenate([dino, siglip], axis=2).transpose(2, 0, 1).copy()


def tokens_to_bins(tokens: np.ndarray, action_vocab_size: int = 32000, n_bins: int = 256) -> np.ndarray:
    """Generated token ids -> bin indices 0..n_bins-2 (OpenVLA's clip(V - t - 1, 0, n_bins - 2))."""
    return openvla_bin_from_token(tokens, vocab_size=action_vocab_size, n_bins=n_bins)


def bins_to_actions(bins: np.ndarray, stats: NormStats, n_bins: int = 256) -> np.ndarray:
    """Bin indices -> bin centres in [-1, 1] -> actions in the dataset's units (q01/q99, mask)."""
    return unnormalize(decode_bins(bins, n_bins), stats)


def synthetic_tokenizer(vocab_size: int, pad_token: str = "<PAD>") -> Any:
    """A Llama-style tokenizer with random-model vocabulary (for ``build_random_openvla`` and tests).

    Layout like Llama 2's: <unk>=0, <s>=1, </s>=2, 256 byte-fallback tokens, "▁" (at 29871 when the
    vocabulary is that large, else right after the bytes), printable characters, then fillers up to
    ``vocab_size``; a <PAD> token is added at id ``vocab_size`` (OpenVLA's pad 32000).
    """
    # lazy: transformers takes about a second to import; only this synthetic tokenizer (random models,
    # tests) needs it, the rest of this module is numpy
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    characters = [c for c in string.ascii_letters + string.digits + string.punctuation]
    if vocab_size < len(specials) + len(characters) + 1:
        raise ValueError(
            f"synthetic_tokenizer: vocab_size {vocab_size} is below {len(specials) + len(characters) + 1}"
        )
    space_id = 29871 if vocab_size > 29871 else len(specials)
    tokens = specials + characters
    tokens += [f"<filler_{i}>" for i in range(len(tokens), vocab_size - 1)]
    tokens.insert(space_id, "▁")
    tokenizer = LlamaTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=[])
    tokenizer.add_special_tokens({"pad_token": pad_token})
    return tokenizer
