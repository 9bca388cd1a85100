"""Upstream OpenVLA on random weights: the reference half of the OpenVLA cross-check.

Runs in .venv-crosscheck/openvla (transformers 4.40.1, timm 0.9.16, tensorflow-cpu; see venv.sh) with
crosscheck/openvla/torchvision_stub first on PYTHONPATH and $ORACLES/openvla importable. It

1. writes the official tensor names and shapes (timm's module names for both vision towers, as the
   release stores them, the projector and the 4.40 Llama) at the released size and at the stack's
   ``tiny`` preset to OUT_DIR/official_names.json (built on the meta device: no memory);
2. builds ``OpenVLAForActionPrediction`` from the upstream port at the real architecture with tiny
   widths (timm's ``vit_large_patch14_reg4_dinov2`` and ``vit_so400m_patch14_siglip_224`` with
   width/depth overridden, a 2-layer Llama with the real 32064-row vocabulary), random weights from a
   fixed seed, and saves it with ``save_pretrained`` (sharded safetensors + config.json) together with
   a Llama tokenizer (a SentencePiece BPE model trained here with Llama 2's trainer settings, saved as
   LlamaTokenizerFast) and the processor that the release's preprocessor_config.json describes;
3. runs upstream's evaluation entry point ``get_vla_action`` (experiments/robot/openvla_utils.py) on a
   fixed image and instruction, with and without ``center_crop``, and on the image passed through
   ``resize_image`` (experiments/robot/bridge/bridgev2_utils.py, the Bridge evaluation resize),
   recording the prompt, the processor's inputs, the ids ``predict_action`` hands to ``generate``,
   the greedy tokens and the unnormalised actions; plus the teacher-forced logits of the 7 action
   tokens and the projector features. Everything goes to OUT_DIR/reference.npz + reference.json.

Usage: python crosscheck/openvla/reference.py OUT_DIR
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch

ORACLE = Path(os.environ["ORACLES"]) / "openvla"
sys.path.insert(0, str(ORACLE))

import sentencepiece  # noqa: E402
import tensorflow as tf  # noqa: E402
import timm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from prismatic.extern.hf.configuration_prismatic import OpenVLAConfig  # noqa: E402
from prismatic.extern.hf.modeling_prismatic import OpenVLAForActionPrediction  # noqa: E402
from prismatic.extern.hf.processing_prismatic import PrismaticImageProcessor, PrismaticProcessor  # noqa: E402
from transformers import LlamaTokenizer, LlamaTokenizerFast  # noqa: E402

SEED = 0
UNNORM_KEY = "bridge_orig"
INSTRUCTION = "Put the Red Cube in the Bowl"
ACTION_TOKENS = range(32000 - 256, 32000)  # the 256 action bins' tokens (V = 32064 - 64)
# The stack's ``tiny`` preset (vla_policy.backends.openvla.configuration.preset("tiny")) in timm terms.
TINY_TIMM = {
    "vit_large_patch14_reg4_dinov2.lvd142m": {"embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0},
    "vit_so400m_patch14_siglip_224": {"embed_dim": 48, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0},
}
TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}
# Action statistics in bridge_orig's layout (q01/q99 of 6 end-effector deltas, the gripper unnormalised).
BRIDGE_ACTION_STATS = {
    "q01": [-0.02872725307941437, -0.04170349963009357, -0.026093858778476715, -0.08092105075716972,
            -0.09288699507713317, -0.20718276381492615, 0.0],
    "q99": [0.028309678435325586, 0.040855254605412394, 0.040161586627364146, 0.08192047759890528,
            0.07792850524187081, 0.20382574498653397, 1.0],
    "mask": [True, True, True, True, True, True, False],
}  # fmt: skip


def release_config(**overrides) -> OpenVLAConfig:
    """openvla-7b's config.json fields (the release's text_config holds only vocab and pad)."""
    fields = {
        "vision_backbone_id": "dinosiglip-vit-so-224px",
        "llm_backbone_id": "llama2-7b-pure",
        "arch_specifier": "no-align+fused-gelu-mlp",
        "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive",
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "vocab_size": 32064},
        "llm_max_length": 2048,
        "pad_token_id": 32000,
        "pad_to_multiple_of": 64,
        "n_action_bins": 256,
        "norm_stats": {UNNORM_KEY: {"action": BRIDGE_ACTION_STATS}},
        "architectures": ["OpenVLAForActionPrediction"],
    }
    fields.update(overrides)
    return OpenVLAConfig(**fields)


@contextlib.contextmanager
def timm_widths(widths: dict[str, dict]):
    """timm.create_model with the widths/depths overridden for the named models (the port calls
    timm.create_model(model_id, ...) through the module attribute, so patching it is enough)."""
    create = timm.create_model

    def create_model(name, *args, **kwargs):
        return create(name, *args, **{**kwargs, **widths.get(name, {})})

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = create


@contextlib.contextmanager
def empty_weights():
    """Parameters and buffers moved to the meta device as modules register them (as accelerate's
    init_empty_weights): shapes without memory. (A torch.device("meta") context would not do: timm
    calls .item() on a tensor while building.)"""
    register_parameter, register_buffer = torch.nn.Module.register_parameter, torch.nn.Module.register_buffer

    def parameter_on_meta(module, name, parameter):
        if parameter is not None:
            parameter = torch.nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)
        register_parameter(module, name, parameter)

    def buffer_on_meta(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor.to("meta") if tensor is not None else None, persistent)

    torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = (
            register_parameter,
            register_buffer,
        )


def state_dict_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def official_names(out_dir: Path) -> None:
    """The checkpoint tensor names/shapes at the released size and the tiny preset (meta device)."""
    sections = {}
    with empty_weights():
        released = OpenVLAForActionPrediction(release_config())
        sections["released"] = {
            "config": config_fields(released.config),
            "tensors": state_dict_shapes(released),
        }
        del released
        tiny_text = {"model_type": "llama", "pad_token_id": 512, "vocab_size": 576, **TINY_LLAMA}
        with timm_widths(TINY_TIMM):
            tiny = OpenVLAForActionPrediction(release_config(text_config=tiny_text, pad_token_id=512))
        tiny_config = config_fields(tiny.config)
        # the tiny preset's "▁" is id 259 of its synthetic tokenizer (29871 lies outside its vocabulary)
        tiny_config["vla_stack_overrides"] = {**stack_overrides(tiny), "prompt_suffix_token_id": 259}
        sections["tiny"] = {
            "config": tiny_config,
            "timm_overrides": TINY_TIMM,
            "tensors": state_dict_shapes(tiny),
        }
    payload = {
        "about": (
            "Tensor names and shapes of an official OpenVLA checkpoint, generated by the upstream "
            "Hugging Face port (openvla/openvla prismatic/extern/hf) with timm's own modules for "
            "vit_large_patch14_reg4_dinov2 and vit_so400m_patch14_siglip_224 (LayerScale 'gamma' "
            "renamed 'scale_factor' as the port does) and transformers' Llama: 'released' at the "
            "openvla-7b config, 'tiny' at the stack's tiny preset. Regenerate with "
            "`bash crosscheck/openvla/run.sh --write-fixture` (needs ../shared/oracles)."
        ),
        "versions": versions(),
        **sections,
    }
    text = json.dumps(payload, indent=1)
    text = re.sub(
        r"\[[\d,\s]*\]", lambda match: json.dumps(json.loads(match.group(0))), text
    )  # a shape per line
    (out_dir / "official_names.json").write_text(text + "\n")


def config_fields(config: OpenVLAConfig) -> dict:
    data = config.to_dict()
    data.pop("norm_stats", None)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def versions() -> dict[str, str]:
    return {
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "tensorflow": tf.__version__,
        "sentencepiece": sentencepiece.__version__,
    }


def stack_overrides(model: OpenVLAForActionPrediction) -> dict:
    """The towers' shapes read off the timm modules, for config.json's ``vla_stack_overrides`` (the
    release's config names the towers by timm id only; the stack reads other sizes from there)."""

    def shape(tower, registers: int) -> dict:
        block = tower.blocks[0]
        return {
            "hidden_size": tower.embed_dim,
            "num_layers": len(tower.blocks),
            "num_heads": block.attn.num_heads,
            "mlp_dim": block.mlp.fc1.out_features,
            "patch_size": tower.patch_embed.patch_size[0],
            "num_registers": registers,
            "class_token": tower.cls_token is not None,
            "layer_scale": hasattr(block.ls1, "scale_factor"),
        }

    backbone = model.vision_backbone
    return {
        "featurizer": shape(backbone.featurizer, backbone.featurizer.num_reg_tokens),
        "fused_featurizer": shape(backbone.fused_featurizer, 0),
    }


def add_stack_overrides(config_path: Path, model: OpenVLAForActionPrediction) -> None:
    config = json.loads(config_path.read_text())
    config["vla_stack_overrides"] = stack_overrides(model)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights at scales that keep activations O(1) and make the action tokens win the argmax."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2:
                parameter.copy_(noise * 2.0 / parameter.shape[-1] ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            elif "scale_factor" in name:  # LayerScale
                parameter.copy_(0.5 + 0.1 * noise)
            else:
                parameter.copy_(0.1 * noise)
        lm_head = model.language_model.lm_head.weight
        lm_head[ACTION_TOKENS.start : ACTION_TOKENS.stop] *= 4.0


def train_tokenizer(directory: Path) -> Path:
    """A SentencePiece BPE model with Llama 2's trainer settings on a small corpus (tokenizer.model)."""
    corpus = directory / "corpus.txt"
    words = (
        "In: What action should the robot take to put the red cube in the bowl pick up place open close "
        "drawer move left right towards sponge pot spoon cloth fold stack blocks on top of\nOut: 0 1 2 3"
    )
    lines = [f"{words} {i}" for i in range(200)] + [INSTRUCTION.lower()] * 50
    corpus.write_text("\n".join(lines) + "\n")
    prefix = directory / "llama_bpe"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,  # a small corpus may hold fewer pieces
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def preprocessor(model: OpenVLAForActionPrediction) -> PrismaticImageProcessor:
    """The release's preprocessor_config.json values, read off timm's data config of each tower."""
    backbone = model.vision_backbone
    towers = [backbone.featurizer, backbone.fused_featurizer]
    data = [timm.data.resolve_model_data_config(tower) for tower in towers]
    size = model.config.image_sizes[0]
    return PrismaticImageProcessor(
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        # as prismatic's TimmViTBackbone: timm's data config with input_size set to the model's size
        input_sizes=[(3, size, size) for _ in data],
        interpolations=[d["interpolation"] for d in data],
        means=[tuple(d["mean"]) for d in data],
        stds=[tuple(d["std"]) for d in data],
    )


def import_evaluation_utils():
    """experiments/robot/openvla_utils.py and bridge/bridgev2_utils.py, with the robot client stubbed."""
    for name in ("widowx_envs", "widowx_envs.widowx_env_service", "experiments.robot.bridge.widowx_env"):
        module = types.ModuleType(name)
        module.WidowXClient = module.WidowXConfigs = module.WidowXGym = None
        sys.modules[name] = module
    sys.modules.setdefault("imageio", types.ModuleType("imageio"))
    from experiments.robot import openvla_utils  # lazy: after the stubs above
    from experiments.robot.bridge import bridgev2_utils  # lazy: after the stubs above

    return openvla_utils, bridgev2_utils


def bridge_fixture(bridgev2_utils, out_dir: Path) -> None:
    """A small image through TensorFlow's JPEG round trip (as resize_image does it) and through
    resize_image itself, for the CI test of the stack's TF-free Bridge resize (bridge_resize_tf.npz)."""
    image = test_image(72, 96)
    round_trip = tf.io.decode_image(tf.image.encode_jpeg(image), expand_animations=False, dtype=tf.uint8)
    np.savez_compressed(
        out_dir / "bridge_resize_tf.npz",
        image=image,
        tf_jpeg_round_trip=round_trip.numpy(),
        tf_resize_image_32=bridgev2_utils.resize_image(image.copy(), (32, 32)),
        about=np.array(
            "OpenVLA's Bridge evaluation resize (experiments/robot/bridge/bridgev2_utils.py resize_image) "
            f"run by tensorflow-cpu {tf.__version__}: image, its tf.image.encode_jpeg + tf.io.decode_image "
            "round trip, and resize_image(image, (32, 32)). Regenerate with "
            "`bash crosscheck/openvla/run.sh --write-fixture`."
        ),
    )


class RecordingProcessor:
    """Wraps the processor for get_vla_action: records prompt, image and inputs; keeps float32 (the
    evaluation casts inputs to bf16 for its bf16 model; this comparison runs everything in fp32)."""

    def __init__(self, processor: PrismaticProcessor) -> None:
        self.processor = processor
        self.calls: list[dict] = []

    def __call__(self, prompt: str, image: Image.Image):
        inputs = self.processor(prompt, image)
        self.calls.append({"prompt": prompt, "image": np.asarray(image).copy(), "inputs": inputs})

        class Inputs(dict):
            def to(self, device, dtype=None):
                return self

        return Inputs(inputs)


def record_generate(model: OpenVLAForActionPrediction) -> list[dict]:
    """Wrap model.generate to keep the ids predict_action passes in and the tokens it returns."""
    calls: list[dict] = []
    generate = model.generate

    def recording_generate(input_ids, **kwargs):
        output = generate(input_ids, **kwargs)
        calls.append({"input_ids": input_ids.clone(), "output": output.clone()})
        return output

    model.generate = recording_generate
    return calls


def test_image(height: int = 240, width: int = 320) -> np.ndarray:
    """A fixed RGB image with smooth random structure (a random image 1/8 the size, bicubic-upsampled)."""
    rng = np.random.default_rng(SEED)
    small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    official_names(out_dir)

    checkpoint = out_dir / "checkpoint"
    checkpoint.mkdir(exist_ok=True)
    tiny_text = {"model_type": "llama", "pad_token_id": 32000, "vocab_size": 32064, **TINY_LLAMA}
    with timm_widths(TINY_TIMM):
        model = OpenVLAForActionPrediction(release_config(text_config=tiny_text))
        randomise(model, SEED)
        model.save_pretrained(str(checkpoint), safe_serialization=True, max_shard_size="4MB")
        # as the release is used: from_pretrained (which also picks the attention implementation)
        model = OpenVLAForActionPrediction.from_pretrained(str(checkpoint), torch_dtype=torch.float32).eval()
    add_stack_overrides(checkpoint / "config.json", model)

    spm_model = train_tokenizer(out_dir)
    slow = LlamaTokenizer(vocab_file=str(spm_model), legacy=False)
    tokenizer = LlamaTokenizerFast(vocab_file=str(spm_model), legacy=False)
    tokenizer.add_special_tokens({"pad_token": "<PAD>"})
    tokenizer.save_pretrained(str(checkpoint))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))  # as the release loads it
    processor = PrismaticProcessor(preprocessor(model), tokenizer)
    processor.save_pretrained(str(checkpoint))

    openvla_utils, bridgev2_utils = import_evaluation_utils()
    image = test_image()
    bridge_image = bridgev2_utils.resize_image(image.copy(), (224, 224))
    bridge_fixture(bridgev2_utils, out_dir)
    recorder = RecordingProcessor(processor)
    generated = record_generate(model)
    results: dict[str, np.ndarray] = {"image": image, "bridge_image": bridge_image}
    cases = {"plain": (image, False), "center_crop": (image, True), "bridge": (bridge_image, False)}
    with torch.inference_mode():
        for case, (case_image, crop) in cases.items():
            action = openvla_utils.get_vla_action(
                model,
                recorder,
                "openvla-7b",
                {"full_image": case_image},
                INSTRUCTION,
                UNNORM_KEY,
                center_crop=crop,
            )
            call, generation = recorder.calls[-1], generated[-1]
            results[f"{case}/action"] = np.asarray(action, np.float64)
            results[f"{case}/processor_image"] = call["image"]
            results[f"{case}/pixel_values"] = call["inputs"]["pixel_values"].numpy()
            results[f"{case}/processor_input_ids"] = call["inputs"]["input_ids"].numpy()
            results[f"{case}/generate_input_ids"] = generation["input_ids"].numpy()
            tokens = generation["output"][:, generation["input_ids"].shape[1] :]
            results[f"{case}/tokens"] = tokens.numpy()
            # teacher-forced: the prompt + the first 6 generated tokens; the last 7 rows predict the 7 tokens
            forced = torch.cat([generation["input_ids"], tokens[:, :-1]], dim=1)
            output = model(
                input_ids=forced,
                pixel_values=call["inputs"]["pixel_values"],
                output_projector_features=True,
                return_dict=True,
            )
            results[f"{case}/action_logits"] = output.logits[:, -tokens.shape[1] :].numpy()
            results[f"{case}/projector_features"] = output.projector_features.numpy()
    np.savez(out_dir / "reference.npz", **results)
    prompt_text = recorder.calls[0]["prompt"]
    metadata = {
        "instruction": INSTRUCTION,
        "unnorm_key": UNNORM_KEY,
        "prompt": prompt_text,
        "slow_tokenizer_ids": [slow.bos_token_id] + slow(prompt_text, add_special_tokens=False).input_ids,
        "versions": versions(),
        "timm_overrides": TINY_TIMM,
        "llama": TINY_LLAMA,
        "seed": SEED,
    }
    (out_dir / "reference.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"[crosscheck/openvla] reference written to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
