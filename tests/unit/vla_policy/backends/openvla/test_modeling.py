"""The native Prismatic network: second-to-last-layer features, input layout, greedy decoding, 7B shapes."""

from __future__ import annotations

import pytest
import torch
from transformers.initialization import no_init_weights

from vla_policy.backends.openvla.configuration import preset
from vla_policy.backends.openvla.modeling import OpenVLAModel


def test_features_are_the_second_to_last_layer_patch_tokens(model):
    pixels = torch.randn(1, 6, 224, 224, generator=torch.Generator().manual_seed(0))
    backbone = model.vision_backbone
    dino_out = backbone.featurizer(pixels[:, :3], output_hidden_states=True)
    siglip_out = backbone.fused_featurizer(pixels[:, 3:], output_hidden_states=True)
    prefix = 1 + model.config.featurizer.num_registers
    torch.testing.assert_close(backbone.dino_features(pixels[:, :3]), dino_out.hidden_states[-2][:, prefix:])
    torch.testing.assert_close(backbone.siglip_features(pixels[:, 3:]), siglip_out.hidden_states[-2])
    # not the last layer and not the final norm
    assert not torch.allclose(
        backbone.dino_features(pixels[:, :3]), dino_out.last_hidden_state[:, prefix:], atol=1e-3
    )
    features = backbone(pixels)
    assert features.shape == (1, 256, model.config.vision_dim)


def test_patches_sit_between_bos_and_the_prompt(model):
    pixels = torch.randn(1, 6, 224, 224)
    ids = torch.tensor([[1, 300, 301, 259]])
    embeds = model.multimodal_embeddings(pixels, ids)
    table = model.language_model.get_input_embeddings().weight
    assert embeds.shape == (1, 1 + 256 + 3, model.config.text.hidden_size)
    torch.testing.assert_close(embeds[0, 0], table[1])
    torch.testing.assert_close(embeds[0, 257:], table[[300, 301, 259]])
    torch.testing.assert_close(embeds[0, 1:257], model.projector(model.vision_backbone(pixels))[0])


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_decoding_with_the_kv_cache_equals_decoding_without(model, cache):
    generator = torch.Generator().manual_seed(5)
    for trial in range(2):
        pixels = torch.randn(1, 6, 224, 224, generator=generator)
        ids = torch.randint(3, 500, (1, 12 + trial), generator=generator)
        ids[0, 0] = 1
        reference = model.greedy_decode(pixels, ids, 7, cache=None)
        assert len(set(reference[0].tolist())) > 1  # a non-degenerate sequence, so the check can fail
        torch.testing.assert_close(
            model.greedy_decode(pixels, ids, 7, cache=cache), reference, rtol=0, atol=0
        )


def test_unknown_cache_kind_is_rejected(model):
    with pytest.raises(ValueError, match="cache 'paged'"):
        model.greedy_decode(torch.zeros(1, 6, 224, 224), torch.tensor([[1, 5]]), 2, cache="paged")


def test_7b_preset_has_the_released_shapes():
    with torch.device("meta"), no_init_weights():
        model = OpenVLAModel(preset("7b"))
    state = model.state_dict()
    assert state["projector.fc1.weight"].shape == (8704, 2176)
    assert state["projector.fc2.weight"].shape == (4096, 8704)
    assert state["projector.fc3.weight"].shape == (4096, 4096)
    assert state["language_model.model.embed_tokens.weight"].shape == (32064, 4096)
    assert state["language_model.lm_head.weight"].shape == (32064, 4096)
    assert state["vision_backbone.featurizer.embeddings.register_tokens"].shape == (1, 4, 1024)
    assert state["vision_backbone.fused_featurizer.encoder.layers.26.mlp.fc1.weight"].shape == (4304, 1152)
    assert len(model.vision_backbone.featurizer.encoder.layer) == 24
    params = sum(p.numel() for p in model.parameters())
    assert 7.4e9 < params < 7.7e9, params
