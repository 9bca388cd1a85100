"""The static KV cache: prompts padded to length buckets give the uncached tokens, the cache of a bucket
is allocated once and reused, and compile/cache are options of the real loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from openvla_fixtures import tiny_model

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.openvla.backend import OpenVLABackend, make_openvla_backend, resolve_cache
from vla_policy.backends.openvla.decoding import (
    PROMPT_BUCKETS,
    StaticDecoder,
    compile_settings,
    prompt_bucket,
)
from vla_policy.backends.openvla.processing import prompt_token_ids, synthetic_tokenizer
from vla_policy.contract import Observation

# Three prompt lengths with the synthetic (one token per character) tokenizer: two share a bucket, the
# third needs the next one.
INSTRUCTIONS = ("pick", "pick it", "put the red cube in the bowl")
IMAGE_SIZE = 112  # 64 patches instead of 256: the same decoding, a quarter of the sequence


def _backend(cache: str | None, model=None, compile: bool | str = False) -> OpenVLABackend:
    model = model if model is not None else tiny_model(seed=0, image_size=IMAGE_SIZE)
    tokenizer = synthetic_tokenizer(model.config.action_vocab_size)
    return OpenVLABackend(model, tokenizer, BRIDGE_ORIG_STATS, "bridge_orig", cache=cache, compile=compile)


def _observations() -> list[Observation]:
    rng = np.random.default_rng(3)
    return [
        Observation(i, {"primary": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)}, text)
        for i, text in enumerate((*INSTRUCTIONS, INSTRUCTIONS[0]))
    ]


def test_the_instructions_span_two_buckets():
    tokenizer = synthetic_tokenizer(tiny_model().config.action_vocab_size)
    lengths = [len(prompt_token_ids(tokenizer, text, 259)) for text in INSTRUCTIONS]
    buckets = [prompt_bucket(n) for n in lengths]
    assert len(set(lengths)) == 3 and buckets[0] == buckets[1] != buckets[2], (lengths, buckets)


def test_static_cache_tokens_equal_uncached_ones_across_prompt_lengths_and_reuse_the_cache():
    model = tiny_model(seed=0, image_size=IMAGE_SIZE)
    reference, static = _backend(None, model), _backend("static", model)
    decoder = static.static_decoder
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    for observation in _observations():
        expected = reference.infer(observation).info["tokens"]
        assert len(set(expected.tolist())) > 1  # non-degenerate, so a mismatch would show
        np.testing.assert_array_equal(static.infer(observation).info["tokens"], expected)
        for key, cache in decoder.caches.items():
            identity = (id(cache), cache.layers[0].keys.data_ptr())
            assert seen.setdefault(key, identity) == identity  # the same cache and the same memory
    assert len(decoder.caches) == 2  # one per bucket used, not one per call or per length


def test_a_reused_cache_is_reset_first(monkeypatch):
    static = _backend("static")
    resets = []
    observation = _observations()[0]
    static.infer(observation)
    (cache,) = static.static_decoder.caches.values()
    monkeypatch.setattr(cache, "reset", lambda: resets.append(True) or type(cache).reset(cache))
    first = static.infer(observation).info["tokens"]
    np.testing.assert_array_equal(static.infer(observation).info["tokens"], first)
    assert resets == [True, True]


def test_prompt_buckets_and_their_errors():
    assert prompt_bucket(1) == PROMPT_BUCKETS[0] and prompt_bucket(33) == 64
    with pytest.raises(
        ValueError, match="prompt of 2000 tokens is longer than the largest static-cache bucket 1024"
    ):
        prompt_bucket(2000)
    decoder = StaticDecoder(tiny_model().language_model, buckets=(8,))
    with pytest.raises(ValueError, match="exceeds the model's 512 positions"):
        decoder(torch.zeros(1, 510, 64), 4, 7)


def test_compile_and_cache_options():
    assert resolve_cache("auto", False) == "dynamic" and resolve_cache("auto", True) == "static"
    assert resolve_cache(None, False) is None
    with pytest.raises(ValueError, match="compile needs cache 'static'"):
        resolve_cache("dynamic", True)
    with pytest.raises(ValueError, match="cache 'paged' is not one of"):
        resolve_cache("paged", False)
    assert compile_settings(True, "cuda") == ("inductor", "reduce-overhead")
    assert compile_settings(True, "cpu") == ("inductor", "default")
    assert compile_settings("aot_eager", "cuda") == ("aot_eager", "default")
    assert compile_settings(False, "cuda") is None
    with pytest.raises(ValueError, match="compile 'tensorrt' is not one of"):
        compile_settings("tensorrt", "cpu")


def test_the_real_loader_takes_compile_and_the_static_cache(checkpoint_dir):
    """make_openvla_backend with compile (traced by dynamo, no code generation): the compiled decode
    step gives the eager tokens, and the checkpoint path gets the reused static cache."""
    torch._dynamo.reset()
    compiled = make_openvla_backend(
        checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", compile="eager", progress=False
    )
    eager = make_openvla_backend(
        checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", cache=None, progress=False
    )
    assert compiled.cache == "static" and compiled.static_decoder.compiled
    assert eager.static_decoder is None
    for observation in _observations()[1:]:  # a bucket's graph twice, the other's once
        np.testing.assert_array_equal(
            compiled.infer(observation).info["tokens"], eager.infer(observation).info["tokens"]
        )
    assert len(compiled.static_decoder.caches) == 2
