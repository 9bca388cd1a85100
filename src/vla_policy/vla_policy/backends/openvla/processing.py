"""OpenVLA's inputs and outputs: prompt, tokens, 6-channel pixels, and action de-tokenisation.

- Prompt: ``In: What action should the robot take to {instruction.lower()}?\\nOut:``, tokenised with
  BOS first; the empty SentencePiece token (29871, "▁") is appended when the prompt does not end in
  it, as the reference ``predict_action`` does.
- Pixels ("resize-naive", the Hugging Face processor): bicubic resize to S x S (no crop), x / 255,
  then DINOv2's ImageNet normalisation (x - mean) / std with mean (0.485, 0.456, 0.406), std (0.229,
  0.224, 0.225), stacked on channels with SigLIP's (x - 0.5) / 0.5: [6, S, S].
- Before the processor, two optional steps of OpenVLA's own evaluation scripts (:class:`ImageOptions`):
  ``resize="jpeg-lanczos3"``, the Bridge evaluation resize (a JPEG round trip at quality 95, then a
  Lanczos-3 antialiased resize to S x S, rounded: the training images went through the same path in
  the RLDS data), and ``center_crop``, for fine-tunes trained with random-crop augmentation (OpenVLA's
  LIBERO fine-tunes): the centred box holding 90 % of the area, bilinearly resized back to S x S as
  tf.image.crop_and_resize does. openvla-7b on Bridge (``bridge_orig``) must not crop.
- Actions: token t -> bin clip(V - t - 1, 0, n_bins - 2) -> bin centre in [-1, 1] -> unnormalised
  0.5 (a + 1)(q99 - q01) + q01 where mask (``vla_common.action_space``).

``crosscheck/openvla`` runs the upstream processor and evaluation functions on the same images.
"""

from __future__ import annotations

import io
import string
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from vla_common.action_space import NormStats, decode_bins, openvla_bin_from_token, unnormalize

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
RESIZE_MODES = ("bicubic", "jpeg-lanczos3")
JPEG_QUALITY = 95  # tf.image.encode_jpeg's default, used by OpenVLA's Bridge evaluation resize
CENTER_CROP_AREA = 0.9  # OpenVLA's crop_scale: the crop keeps 90 % of the area (sqrt(0.9) per side)


@dataclass(frozen=True)
class ImageOptions:
    """How a camera image becomes the S x S model input before normalisation (defaults: the HF processor).

    ``resize``: "bicubic" (the processor's PIL bicubic resize, what OpenVLA's REST deploy server does)
    or "jpeg-lanczos3" (the Bridge evaluation script's resize, see :func:`jpeg_lanczos3_resize`).
    ``center_crop``: take the centred ``CENTER_CROP_AREA`` box first (:func:`center_crop`); on for
    fine-tunes trained with image augmentation (e.g. the LIBERO ones), off for openvla-7b on Bridge.
    """

    resize: str = "bicubic"
    center_crop: bool = False

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"openvla image resize '{self.resize}' is not one of {', '.join(RESIZE_MODES)}")
        if not isinstance(self.center_crop, bool):
            raise ValueError(f"openvla center_crop must be true or false, got {self.center_crop!r}")


DEFAULT_IMAGE_OPTIONS = ImageOptions()


def build_prompt(instruction: str) -> str:
    """The exact OpenVLA prompt for one instruction (lower-cased, as the reference does)."""
    return PROMPT_TEMPLATE.format(instruction=instruction.lower())


def with_suffix_token(ids: list[int], suffix_token_id: int) -> list[int]:
    """``ids`` ending in ``suffix_token_id``: appended unless already last (the reference's 29871 rule)."""
    return list(ids) if ids and ids[-1] == suffix_token_id else [*ids, suffix_token_id]


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
    return with_suffix_token(ids, suffix_token_id)


def _check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image: expected HxWx3 uint8 RGB, got shape {list(image.shape)} dtype {image.dtype}"
        )


def jpeg_round_trip(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """HxWx3 uint8 RGB through tf.image.encode_jpeg + tf.io.decode_image as TensorFlow does them.

    Encoding: baseline JPEG, 4:2:0 chroma, the accurate integer DCT (Pillow writes the same pixels as
    TensorFlow). Decoding: TensorFlow decodes with libjpeg's fast integer IDCT (its ``dct_method``
    default, INTEGER_FAST) and fancy upsampling, which Pillow and OpenCV cannot be asked for (their
    accurate IDCT differs by up to 12 levels); simplejpeg (libjpeg-turbo) can.
    """
    _check_rgb(image)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return simplejpeg.decode_jpeg(buffer.getvalue(), colorspace="RGB", fastdct=True, fastupsample=False)


def lanczos3_resize(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size: tf.image.resize(method="lanczos3", antialias=True), rounded.

    Each output pixel is sum_s w(s) x(s) / sum_s w(s) with the Lanczos-3 kernel
    w = sinc(d) sinc(d / 3), d = (s + 0.5 - (o + 0.5) / scale) x min(scale, 1) (the kernel widened by
    1 / scale when shrinking: antialiasing), computed in floating point (PIL's resampler on float
    images implements exactly this), then rounded half to even and clipped to 0..255 as
    ``tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)``.
    """
    _check_rgb(image)
    channels = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32)).resize(
                (size, size), resample=Image.Resampling.LANCZOS
            )
        )
        for c in range(3)
    ]
    return np.clip(np.round(np.stack(channels, axis=2)), 0, 255).astype(np.uint8)


def jpeg_lanczos3_resize(image: np.ndarray, size: int) -> np.ndarray:
    """OpenVLA's evaluation resize (experiments/robot/bridge/bridgev2_utils.py ``resize_image``):
    tf.image.encode_jpeg + decode ("as done in the RLDS dataset builder"), then Lanczos-3."""
    return lanczos3_resize(jpeg_round_trip(image), size)


def center_crop(image: np.ndarray, size: int, area: float = CENTER_CROP_AREA) -> np.ndarray:
    """The centred box with ``area`` of the image's area, bilinearly resized to size x size (uint8).

    OpenVLA's ``crop_and_resize`` as its evaluation applies it: x = uint8 x (1/255) in float32; the
    box side is sqrt(area) of each image side, offset (1 - side) / 2; tf.image.crop_and_resize
    samples output pixel i at y1 (H - 1) + i (y2 - y1)(H - 1) / (size - 1) (and likewise across),
    bilinear between the four neighbours; then clip to [0, 1] and convert back to uint8 as
    tf.image.convert_image_dtype(saturate=True) does: truncate(x x 255.5), saturated.
    """
    _check_rgb(image)
    if not 0.0 < area <= 1.0:
        raise ValueError(f"center crop area must be in (0, 1], got {area}")
    f32 = np.float32
    pixels = image.astype(f32) * f32(1.0 / 255.0)
    side = np.clip(np.sqrt(f32(area)), f32(0), f32(1))
    start = (f32(1) - side) / f32(2)
    end = start + side

    def sample_at(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = ((end - start) * f32(length - 1)) / f32(size - 1) if size > 1 else f32(0)
        positions = start * f32(length - 1) + np.arange(size, dtype=f32) * step
        low = np.floor(positions).astype(np.int64)
        high = np.minimum(np.ceil(positions).astype(np.int64), length - 1)
        return low, high, (positions - low.astype(f32)).astype(f32)

    top, bottom, y_lerp = sample_at(image.shape[0])
    left, right, x_lerp = sample_at(image.shape[1])
    x_lerp = x_lerp[None, :, None]
    upper = pixels[top][:, left] + (pixels[top][:, right] - pixels[top][:, left]) * x_lerp
    lower = pixels[bottom][:, left] + (pixels[bottom][:, right] - pixels[bottom][:, left]) * x_lerp
    cropped = np.clip(upper + (lower - upper) * y_lerp[:, None, None], f32(0), f32(1))
    return np.clip(np.trunc(cropped * f32(255.5)), 0, 255).astype(np.uint8)


def prepare_image(image: np.ndarray, size: int, options: ImageOptions = DEFAULT_IMAGE_OPTIONS) -> np.ndarray:
    """HxWx3 uint8 RGB -> the size x size uint8 image the processor normalises (see ImageOptions)."""
    _check_rgb(image)
    if options.resize == "jpeg-lanczos3":
        image = jpeg_lanczos3_resize(image, size)
    if options.center_crop:
        image = center_crop(image, size)
    return resize_naive(image, size)


def resize_naive(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> size x size, bicubic (PIL, as torchvision's resize of a PIL image), no crop."""
    _check_rgb(image)
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), resample=Image.Resampling.BICUBIC))


def pixel_values(image: np.ndarray, size: int, options: ImageOptions = DEFAULT_IMAGE_OPTIONS) -> np.ndarray:
    """HxWx3 uint8 RGB -> [6, size, size] float32: DINOv2-normalised channels, then SigLIP's."""
    x = prepare_image(image, size, options).astype(np.float32) / 255.0
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
