"""OpenVLA (Prismatic ``dinosiglip-vit-so-224px`` + Llama 2) hyperparameters from the official config.json.

The official ``config.json`` (model_type ``openvla``) names the vision backbone by id and holds only a
partial Llama ``text_config`` (``vocab_size`` 32064, ``pad_token_id`` 32000); the shapes behind the ids
are fixed here. Checkpoints written by :func:`save_openvla_checkpoint` at other sizes (the ``tiny``
test preset) add a ``vla_stack_overrides`` object with the vision shapes and the prompt-suffix token,
which the official files simply lack.

Derived quantities (OpenVLA's rules):

- action vocabulary size ``V = text_config.vocab_size - pad_to_multiple_of`` (32064 - 64 = 32000);
  action tokens are the last ``n_action_bins`` ids below ``V``;
- projector: ``fc1`` D_v -> 4 D_v, ``fc2`` 4 D_v -> D_llm, ``fc3`` D_llm -> D_llm with
  ``D_v = D_dino + D_siglip`` (1024 + 1152 = 2176).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

VISION_BACKBONE_ID = "dinosiglip-vit-so-224px"
LLM_BACKBONE_ID = "llama2-7b-pure"
ARCH_SPECIFIER = "no-align+fused-gelu-mlp"
RESIZE_STRATEGY = "resize-naive"
TIMM_MODEL_IDS = ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
PROMPT_SUFFIX_TOKEN_ID = 29871  # SentencePiece "▁": OpenVLA appends it when the prompt lacks it
OVERRIDES_KEY = "vla_stack_overrides"


@dataclass(frozen=True)
class ViTShape:
    """One vision transformer's shape (timm naming in comments)."""

    hidden_size: int  # embed_dim
    num_layers: int  # depth (number of blocks)
    num_heads: int
    mlp_dim: int  # int(embed_dim * mlp_ratio)
    patch_size: int = 14
    num_registers: int = 0  # reg_tokens (DINOv2 w/ registers: 4)
    class_token: bool = False  # DINOv2: True; SigLIP (attention-pool head): False
    layer_scale: bool = False  # DINOv2 LayerScale (ls1/ls2)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "mlp_dim", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ViTShape.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_layers < 2:
            raise ValueError(
                f"ViTShape.num_layers must be >= 2 (features come from layer -2), got {self.num_layers}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"ViTShape.hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )


@dataclass(frozen=True)
class LlamaShape:
    """The Llama 2 language model's shape (Hugging Face LlamaConfig names)."""

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    max_position_embeddings: int = 2048
    # OpenVLA's released text_config sets only vocab_size/pad_token_id, so the hub model runs with
    # transformers 4.40's LlamaConfig defaults (rms_norm_eps 1e-6, not Llama 2's 1e-5). Fixed here so a
    # newer transformers cannot change them; a text_config key overrides.
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    vocab_size: int = 32064  # rows of the padded embedding / lm_head

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"LlamaShape.hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )


DINOV2_VIT_L14_REG4 = ViTShape(1024, 24, 16, 4096, num_registers=4, class_token=True, layer_scale=True)
SIGLIP_SO400M_14 = ViTShape(1152, 27, 16, 4304)
LLAMA2_7B = LlamaShape()


@dataclass(frozen=True)
class OpenVLAConfig:
    """Everything needed to build the model and decode its actions."""

    featurizer: ViTShape = DINOV2_VIT_L14_REG4
    fused_featurizer: ViTShape = SIGLIP_SO400M_14
    text: LlamaShape = LLAMA2_7B
    image_size: int = 224
    pad_token_id: int = 32000
    pad_to_multiple_of: int = 64
    n_action_bins: int = 256
    prompt_suffix_token_id: int = PROMPT_SUFFIX_TOKEN_ID
    norm_stats: dict[str, Any] = field(default_factory=dict)  # {dataset: {"action": {q01, q99, mask, ...}}}

    def __post_init__(self) -> None:
        for shape_name in ("featurizer", "fused_featurizer"):
            shape = getattr(self, shape_name)
            if self.image_size % shape.patch_size:
                raise ValueError(
                    f"OpenVLAConfig.image_size {self.image_size} is not a multiple of "
                    f"{shape_name}.patch_size {shape.patch_size}"
                )
        if self.featurizer.mlp_dim % self.featurizer.hidden_size:
            raise ValueError(
                f"OpenVLAConfig.featurizer.mlp_dim {self.featurizer.mlp_dim} must be a multiple of "
                f"hidden_size {self.featurizer.hidden_size} (DINOv2's integer mlp_ratio)"
            )
        if self.featurizer.patch_size != self.fused_featurizer.patch_size:
            raise ValueError("OpenVLAConfig: both featurizers need the same patch_size to align patches")
        if self.action_vocab_size < self.n_action_bins:
            raise ValueError(
                f"OpenVLAConfig: action vocabulary {self.action_vocab_size} (text vocab_size "
                f"{self.text.vocab_size} - pad_to_multiple_of {self.pad_to_multiple_of}) is smaller than "
                f"n_action_bins {self.n_action_bins}"
            )
        if not 0 <= self.prompt_suffix_token_id < self.text.vocab_size:
            raise ValueError(
                f"OpenVLAConfig.prompt_suffix_token_id {self.prompt_suffix_token_id} is outside the "
                f"vocabulary 0..{self.text.vocab_size - 1}"
            )

    @property
    def action_vocab_size(self) -> int:
        """OpenVLA's ``vocab_size``: padded rows minus the padding multiple (32064 - 64 = 32000)."""
        return self.text.vocab_size - self.pad_to_multiple_of

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.featurizer.patch_size) ** 2

    @property
    def vision_dim(self) -> int:
        return self.featurizer.hidden_size + self.fused_featurizer.hidden_size


def padded_vocab_size(base_vocab_size: int, pad_to_multiple_of: int = 64) -> int:
    """Rows after adding the <PAD> token and padding: ceil((V + 1) / m) * m (32000 -> 32064)."""
    return math.ceil((base_vocab_size + 1) / pad_to_multiple_of) * pad_to_multiple_of


def preset(size: str) -> OpenVLAConfig:
    """``7b``: the released shapes. ``tiny``: ~1.5 MB, the same structure (registers, LayerScale)."""
    if size == "7b":
        return OpenVLAConfig()
    if size == "tiny":
        base_vocab = 512
        return OpenVLAConfig(
            featurizer=ViTShape(32, 3, 2, 64, num_registers=4, class_token=True, layer_scale=True),
            fused_featurizer=ViTShape(48, 3, 2, 96),
            text=LlamaShape(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=512,
                rms_norm_eps=1e-6,
                vocab_size=padded_vocab_size(base_vocab),
            ),
            pad_token_id=base_vocab,
            prompt_suffix_token_id=3 + 256,  # "▁" in the synthetic tokenizer (after 3 specials and 256 bytes)
        )
    raise ValueError(f"OpenVLA size '{size}' is unknown; available: tiny, 7b")


def config_from_json(data: dict[str, Any], source: str = "config.json") -> OpenVLAConfig:
    """Parse an official OpenVLA config.json (plus this project's optional overrides)."""
    checks = {
        "vision_backbone_id": VISION_BACKBONE_ID,
        "image_resize_strategy": RESIZE_STRATEGY,
        "arch_specifier": ARCH_SPECIFIER,
    }
    for key, supported in checks.items():
        value = data.get(key, supported)
        if value != supported:
            raise ValueError(
                f"{source}: {key} '{value}' is not supported; the native OpenVLA needs '{supported}'"
            )
    if data.get("use_fused_vision_backbone", True) is not True:
        raise ValueError(f"{source}: use_fused_vision_backbone must be true (DINOv2 + SigLIP)")
    overrides = data.get(OVERRIDES_KEY, {})
    text_fields = {f for f in LlamaShape.__dataclass_fields__}
    text_config = {k: v for k, v in data.get("text_config", {}).items() if k in text_fields}
    text = replace(LLAMA2_7B, **text_config)
    sizes = data.get("image_sizes", [224, 224])
    if len(set(sizes)) != 1:
        raise ValueError(f"{source}: image_sizes {sizes} must all be equal (one fused input size)")
    try:
        return OpenVLAConfig(
            featurizer=ViTShape(**overrides["featurizer"])
            if "featurizer" in overrides
            else DINOV2_VIT_L14_REG4,
            fused_featurizer=(
                ViTShape(**overrides["fused_featurizer"])
                if "fused_featurizer" in overrides
                else SIGLIP_SO400M_14
            ),
            text=text,
            image_size=int(sizes[0]),
            pad_token_id=int(data.get("pad_token_id", 32000)),
            pad_to_multiple_of=int(data.get("pad_to_multiple_of", 64)),
            n_action_bins=int(data.get("n_action_bins", 256)),
            prompt_suffix_token_id=int(overrides.get("prompt_suffix_token_id", PROMPT_SUFFIX_TOKEN_ID)),
            norm_stats=dict(data.get("norm_stats") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc


def config_to_json(config: OpenVLAConfig) -> dict[str, Any]:
    """The official config.json fields (model_type ``openvla``), plus overrides for non-released shapes."""
    data: dict[str, Any] = {
        "model_type": "openvla",
        "architectures": ["OpenVLAForActionPrediction"],
        "vision_backbone_id": VISION_BACKBONE_ID,
        "llm_backbone_id": LLM_BACKBONE_ID,
        "arch_specifier": ARCH_SPECIFIER,
        "use_fused_vision_backbone": True,
        "image_resize_strategy": RESIZE_STRATEGY,
        "timm_model_ids": TIMM_MODEL_IDS,
        "timm_override_act_layers": [None, None],
        "image_sizes": [config.image_size, config.image_size],
        "llm_max_length": 2048,
        "pad_token_id": config.pad_token_id,
        "pad_to_multiple_of": config.pad_to_multiple_of,
        "n_action_bins": config.n_action_bins,
        "output_projector_states": False,
        "norm_stats": config.norm_stats,
        "torch_dtype": "bfloat16",
        "text_config": {"model_type": "llama", "pad_token_id": config.pad_token_id, **asdict(config.text)},
    }
    overrides: dict[str, Any] = {}
    if config.featurizer != DINOV2_VIT_L14_REG4:
        overrides["featurizer"] = asdict(config.featurizer)
    if config.fused_featurizer != SIGLIP_SO400M_14:
        overrides["fused_featurizer"] = asdict(config.fused_featurizer)
    if config.prompt_suffix_token_id != PROMPT_SUFFIX_TOKEN_ID:
        overrides["prompt_suffix_token_id"] = config.prompt_suffix_token_id
    if overrides:
        data[OVERRIDES_KEY] = overrides
    return data
