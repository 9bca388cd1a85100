"""The loader never holds two copies of the weights: bf16 on the CPU uses the memory-mapped shards as the
parameters; a conversion (or 4/8-bit quantisation, with a stand-in bitsandbytes) releases each shard's
mapping as soon as its tensors are placed. Read from /proc/self/smaps (the process's mappings)."""

from __future__ import annotations

import gc
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from openvla_fixtures import NORM_STATS, tiny_model
from torch import nn

from vla_policy.backends.openvla import loading
from vla_policy.backends.openvla.key_map import DINO, SIGLIP, official_to_native
from vla_policy.backends.openvla.processing import synthetic_tokenizer
from vla_policy.checkpoint import load_safetensors, load_state_dict_strict

SHARD_BYTES = 160_000  # the tiny model in bf16 is ~0.8 MB: five shards
# Built by the key map from several official tensors (copies by construction, a few KB).
KEY_MAP_COPIES = {
    f"{SIGLIP}.head.attention.in_proj_weight",
    f"{SIGLIP}.head.attention.in_proj_bias",
    f"{DINO}.embeddings.position_embeddings",
    f"{DINO}.embeddings.mask_token",
}


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory) -> Path:
    model = tiny_model(seed=1).to(torch.bfloat16)
    tokenizer = synthetic_tokenizer(model.config.action_vocab_size)
    root = tmp_path_factory.mktemp("openvla_bf16")
    return loading.save_openvla_checkpoint(model, tokenizer, NORM_STATS, root, max_shard_bytes=SHARD_BYTES)


def _shards(root: Path) -> dict[str, int]:
    """{resolved shard path: size}."""
    shards = {str(p.resolve()): p.stat().st_size for p in root.glob("model-*.safetensors")}
    assert len(shards) >= 4
    return shards


def _mappings() -> list[tuple[int, int, str, int]]:
    """(start, end, path, resident bytes) of every mapping of this process."""
    mappings, current = [], None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            current = [start, end, fields[5] if len(fields) > 5 else "", 0]
            mappings.append(current)
        elif fields[0] == "Rss:":
            current[3] = int(fields[1]) * 1024
    return [tuple(m) for m in mappings]


def _load(root: Path, dtype, **options):
    config = loading.read_openvla_config(root)
    return loading.load_openvla_model(root, config, "cpu", dtype, progress=False, **options)


def test_bf16_on_the_cpu_uses_the_memory_mapped_shards_as_the_weights(bf16_checkpoint):
    shards = _shards(bf16_checkpoint)
    model = _load(bf16_checkpoint, torch.bfloat16)
    spans = [(start, end) for start, end, path, _ in _mappings() if path in shards]
    copied = {
        name
        for name, parameter in model.state_dict().items()
        if not any(start <= parameter.data_ptr() < end for start, end in spans)
    }
    assert copied == KEY_MAP_COPIES
    _assert_equal_to_a_plain_load(model, bf16_checkpoint, torch.bfloat16)


def _assert_equal_to_a_plain_load(model, root: Path, dtype) -> None:
    """The same values as reading every tensor and copying it into a built model (the old loader)."""
    config = loading.read_openvla_config(root)
    reference = loading.build_model(config, "cpu", dtype)
    load_state_dict_strict(reference, official_to_native(load_safetensors(root), config), "plain load")
    loaded = model.state_dict()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0, msg=name)


def _watch_shards(monkeypatch, shards: dict[str, int], function: str) -> list[int]:
    """After each call of ``loading.<function>``: how many shard files are still mapped. A shard's
    mapping goes when its last tensor has been placed."""
    gc.collect()  # models of earlier tests, if any cycle kept them
    assert not any(path in shards for _, _, path, _ in _mappings())
    counts: list[int] = []
    original = getattr(loading, function)

    def watched(*args):
        original(*args)
        mapped = {path for _, _, path, _ in _mappings() if path in shards}
        counts.append(len(mapped))

    monkeypatch.setattr(loading, function, watched)
    return counts


def _assert_released_one_by_one(counts: list[int], shards: dict[str, int]) -> None:
    """All shards mapped at first, then released one after another while loading, never all at the end:
    the host holds the model plus the shard being placed (and the first page of each tensor that
    safetensors touched when it mapped them, 64 KiB each with Linux's fault-around)."""
    assert counts[0] == len(shards) and counts == sorted(counts, reverse=True), counts
    assert set(counts) == set(range(1, len(shards) + 1)), counts
    assert not any(path in shards for _, _, path, _ in _mappings())  # nothing of the files is kept


def _watch_order(monkeypatch, shards: dict[str, int]) -> list[str]:
    """The shard file of each tensor in the order the loader places them (heap copies left out)."""
    files: list[str] = []
    original = loading.placement_order

    def watched(tensors):
        order = original(tensors)
        spans = [(start, end, path) for start, end, path, _ in _mappings() if path in shards]
        for name in order:
            pointer = tensors[name].data_ptr()
            files.extend(path for start, end, path in spans if start <= pointer < end)
        return order

    monkeypatch.setattr(loading, "placement_order", watched)
    return files


def _assert_one_shard_at_a_time(files: list[str], shards: dict[str, int]) -> None:
    runs = [path for i, path in enumerate(files) if i == 0 or files[i - 1] != path]
    assert sorted(runs) == sorted(shards), runs  # each shard's tensors placed in one run


def test_a_conversion_places_one_shard_at_a_time_and_releases_it(bf16_checkpoint, monkeypatch):
    shards = _shards(bf16_checkpoint)
    counts = _watch_shards(monkeypatch, shards, "place_tensor")
    files = _watch_order(monkeypatch, shards)
    model = _load(bf16_checkpoint, torch.float32)
    assert len(counts) == len(model.state_dict())
    _assert_one_shard_at_a_time(files, shards)
    _assert_released_one_by_one(counts, shards)
    assert model.projector.fc1.weight.dtype == torch.float32
    _assert_equal_to_a_plain_load(model, bf16_checkpoint, torch.float32)


def _fake_bitsandbytes(quantised: list) -> types.ModuleType:
    """Stand-ins with bitsandbytes' constructor signatures whose ``.to(device)`` records what it
    would quantise (and from where) and returns a small uint8 tensor, as the real one packs weights."""

    def record(parameter, device):
        quantised.append((parameter.data_ptr(), parameter.dtype, tuple(parameter.shape), str(device)))
        return nn.Parameter(
            torch.zeros(max(1, parameter.numel() // 2), dtype=torch.uint8), requires_grad=False
        )

    class Params4bit(nn.Parameter):
        def __new__(cls, data=None, requires_grad=False, compress_statistics=True, quant_type="fp4",
                    quant_storage=torch.uint8, module=None):  # fmt: skip
            self = torch.Tensor._make_subclass(cls, data, requires_grad)
            self.compress_statistics, self.quant_type, self.quant_storage = (
                compress_statistics,
                quant_type,
                quant_storage,
            )
            return self

        def to(self, device):
            return record(self, device)

    class Int8Params(nn.Parameter):
        def __new__(cls, data=None, requires_grad=False, has_fp16_weights=False):
            return torch.Tensor._make_subclass(cls, data, requires_grad)

        def to(self, device):
            return record(self, device)

    class Linear4bit(nn.Linear):
        def __init__(self, in_features, out_features, bias=True, compute_dtype=None, quant_type="fp4"):
            super().__init__(in_features, out_features, bias)
            self.weight = Params4bit(self.weight.data, quant_type=quant_type, module=self)
            self.compute_dtype = compute_dtype

    class Linear8bitLt(nn.Linear):
        def __init__(self, in_features, out_features, bias=True, has_fp16_weights=True, threshold=0.0):
            super().__init__(in_features, out_features, bias)
            self.weight = Int8Params(self.weight.data, has_fp16_weights=has_fp16_weights)

    module = types.ModuleType("bitsandbytes")
    module.nn = types.SimpleNamespace(
        Linear4bit=Linear4bit, Linear8bitLt=Linear8bitLt, Params4bit=Params4bit, Int8Params=Int8Params
    )
    return module


@pytest.mark.parametrize(("load_in", "layer"), [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantised_layers_are_fed_straight_from_the_mapped_shards(
    bf16_checkpoint, monkeypatch, load_in, layer
):
    quantised: list = []
    monkeypatch.setitem(sys.modules, "bitsandbytes", _fake_bitsandbytes(quantised))
    shards = _shards(bf16_checkpoint)
    counts = _watch_shards(monkeypatch, shards, "set_quantized_weight")
    files = _watch_order(monkeypatch, shards)
    spans = []

    def remember_spans(*args, **kwargs):
        tensors = load_safetensors(*args, **kwargs)
        spans.extend((a, b) for a, b, path, _ in _mappings() if path in shards)
        return tensors

    load_safetensors = loading.load_safetensors
    monkeypatch.setattr(loading, "load_safetensors", remember_spans)
    # float32 for the rest, so that every other tensor is a converted copy and the shards can go
    model = _load(bf16_checkpoint, torch.float32, load_in=load_in)

    decoder = model.language_model.model.layers
    linears = [m for m in decoder.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7 * len(decoder) and all(type(m).__name__ == layer for m in linears)
    assert len(quantised) == len(linears)
    for pointer, dtype, _, device in quantised:  # each weight came from its shard's mapping, in bf16
        assert any(start <= pointer < end for start, end in spans) and dtype == torch.bfloat16
        assert device == "cpu"
    assert all(m.weight.dtype == torch.uint8 for m in linears)
    _assert_one_shard_at_a_time(files, shards)
    assert counts == sorted(counts, reverse=True), counts
    assert not any(path in shards for _, _, path, _ in _mappings())
    assert model.language_model.lm_head.weight.dtype == torch.float32  # not quantised
    assert model.vision_backbone.featurizer.encoder.layer[0].mlp.fc1.weight.dtype == torch.float32


def test_quantisation_without_bitsandbytes_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # an import of it raises ImportError
    with pytest.raises(ImportError, match="needs the bitsandbytes package"):
        loading.swap_in_quantized_linears(tiny_model(), "4bit", torch.bfloat16)
