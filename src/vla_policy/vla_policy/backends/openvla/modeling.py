"""OpenVLA's Prismatic architecture built natively from transformers parts (no timm, no remote code).

Read top to bottom: the fused vision backbone, the projector, the whole model and its greedy decoder.

- Vision: ``pixel_values`` [B, 6, H, W] = DINOv2-normalised RGB (channels 0-2) stacked with
  SigLIP-normalised RGB (channels 3-5). DINOv2 ViT-L/14 with 4 registers and LayerScale
  (``Dinov2WithRegistersModel``) and SigLIP So400m/14 (``SiglipVisionModel``) each return the patch
  tokens of their SECOND-TO-LAST block, prefix (class + register) tokens dropped, as timm's
  ``get_intermediate_layers(n={depth - 2})`` does: no final norm, no pooling head. Only the first
  ``depth - 1`` blocks run; the last block, the final norms and SigLIP's attention-pool head hold
  checkpoint weights (loaded, so the checkpoint maps one to one) but never execute.
  Features: z = concat(DINO_{L-1}(x_dino), SigLIP_{L-1}(x_siglip)) on channels, [B, P, 1024 + 1152].
- Projector (fused GELU MLP): e = fc3(GELU(fc2(GELU(fc1(z))))), fc1 2176 -> 8704, fc2 8704 -> 4096,
  fc3 4096 -> 4096 (exact erf GELU, as torch.nn.GELU()).
- Language model: ``LlamaForCausalLM`` with the embedding padded to 32064 rows. The input sequence is
  [BOS, e_1..e_P, prompt tokens after BOS]; greedy decoding picks argmax_v logits[v] per step.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    LlamaConfig,
    LlamaForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.cache_utils import DynamicCache

from vla_policy.backends.openvla.configuration import LlamaShape, OpenVLAConfig, ViTShape
from vla_policy.backends.openvla.decoding import StaticDecoder

ATTENTION_IMPLEMENTATION = "sdpa"


def dinov2_config(shape: ViTShape, image_size: int) -> Dinov2WithRegistersConfig:
    """timm vit_large_patch14_reg4_dinov2: exact GELU, LayerNorm eps 1e-6, qkv bias, LayerScale."""
    return Dinov2WithRegistersConfig(
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        mlp_ratio=shape.mlp_dim // shape.hidden_size,  # an int in transformers' config
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        image_size=image_size,
        patch_size=shape.patch_size,
        num_channels=3,
        qkv_bias=True,
        layerscale_value=1e-5,
        num_register_tokens=shape.num_registers,
        use_swiglu_ffn=False,
        drop_path_rate=0.0,
        attn_implementation=ATTENTION_IMPLEMENTATION,
    )


def siglip_config(shape: ViTShape, image_size: int) -> SiglipVisionConfig:
    """timm vit_so400m_patch14_siglip_224: no class token, attention-pool ('map') head, and timm's
    default exact GELU (OpenVLA's config sets ``timm_override_act_layers`` to null, so not tanh-GELU)."""
    return SiglipVisionConfig(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.mlp_dim,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        image_size=image_size,
        patch_size=shape.patch_size,
        num_channels=3,
        vision_use_head=True,
        attn_implementation=ATTENTION_IMPLEMENTATION,
    )


def llama_config(shape: LlamaShape, pad_token_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        hidden_act="silu",
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation=ATTENTION_IMPLEMENTATION,
    )


class PrismaticVisionBackbone(nn.Module):
    """DINOv2 (registers) + SigLIP, second-to-last-block patch features concatenated per patch."""

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        self.featurizer = Dinov2WithRegistersModel(dinov2_config(config.featurizer, config.image_size))
        self.fused_featurizer = SiglipVisionModel(siglip_config(config.fused_featurizer, config.image_size))
        self.num_prefix_tokens = 1 + config.featurizer.num_registers  # class + registers

    def dino_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> patch tokens after block depth-2 (0-based), [B, P, D_dino]."""
        hidden = self.featurizer.embeddings(pixels)  # [cls, registers, patches] (+ positions on cls/patches)
        for layer in self.featurizer.encoder.layer[:-1]:
            hidden = layer(hidden, None)
        return hidden[:, self.num_prefix_tokens :]

    def siglip_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> patch tokens after block depth-2 (0-based), [B, P, D_siglip]."""
        hidden = self.fused_featurizer.embeddings(pixels)
        for layer in self.fused_featurizer.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 6:
            raise ValueError(f"pixel_values: expected [B, 6, H, W], got {list(pixel_values.shape)}")
        dino_pixels, siglip_pixels = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat([self.dino_features(dino_pixels), self.siglip_features(siglip_pixels)], dim=2)


class FusedMLPProjector(nn.Module):
    """e = fc3(GELU(fc2(GELU(fc1(z))))) with fc1 D_v -> 4 D_v, fc2 4 D_v -> D_llm, fc3 D_llm -> D_llm."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(features)))))


class OpenVLAModel(nn.Module):
    """vision_backbone -> projector -> language_model, with module names matching the checkpoint's."""

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_backbone = PrismaticVisionBackbone(config)
        self.projector = FusedMLPProjector(config.vision_dim, config.text.hidden_size)
        self.language_model = LlamaForCausalLM(llama_config(config.text, config.pad_token_id))

    def multimodal_embeddings(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """[BOS] + projected patches + the rest of the prompt: [B, 1 + P + (T - 1), D_llm]."""
        dtype = self.projector.fc1.weight.dtype
        patches = self.projector(self.vision_backbone(pixel_values.to(dtype)))
        text = self.language_model.get_input_embeddings()(input_ids)
        return torch.cat([text[:, :1], patches.to(text.dtype), text[:, 1:]], dim=1)

    @torch.inference_mode()
    def greedy_decode(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        max_new_tokens: int = 7,
        cache: str | None = "dynamic",
        static_decoder: StaticDecoder | None = None,
    ) -> torch.Tensor:
        """Greedy tokens [B, max_new_tokens]: t_k = argmax logits(prefix, t_1..t_{k-1}).

        ``cache``: "dynamic" (DynamicCache), "static" (the prompt padded to a length bucket and a
        StaticCache per bucket, reused across calls through ``static_decoder``, see :mod:`.decoding`;
        without one, a decoder for this call alone) or None (re-run the whole sequence each step, the
        reference the cached paths must equal).
        """
        if cache not in ("dynamic", "static", None):
            raise ValueError(f"greedy_decode: cache '{cache}' is not one of dynamic, static, None")
        embeds = self.multimodal_embeddings(pixel_values, input_ids)
        lm = self.language_model
        if cache == "static":
            decoder = static_decoder if static_decoder is not None else StaticDecoder(lm)
            return decoder(embeds, input_ids.shape[1], max_new_tokens)
        if cache is None:
            tokens = []
            for _ in range(max_new_tokens):
                logits = lm(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits
                token = logits[:, -1].argmax(dim=-1)
                tokens.append(token)
                embeds = torch.cat([embeds, lm.get_input_embeddings()(token[:, None])], dim=1)
            return torch.stack(tokens, dim=1)
        kv = DynamicCache(config=lm.config)
        logits = lm(inputs_embeds=embeds, cache=kv, use_cache=True, logits_to_keep=1).logits
        tokens = [logits[:, -1].argmax(dim=-1)]
        for _ in range(max_new_tokens - 1):
            logits = lm(input_ids=tokens[-1][:, None], cache=kv, use_cache=True, logits_to_keep=1).logits
            tokens.append(logits[:, -1].argmax(dim=-1))
        return torch.stack(tokens, dim=1)
