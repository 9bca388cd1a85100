"""RT-2-style policy backend: a Hugging Face vision-language model that answers with action text.

One camera image and the prompt "Q: what action should the robot take to {instruction}? A:" go in;
greedy decoding, restricted by :mod:`~vla_policy.backends.rt2.grammar` to "t b1 .. b7" in the
checkpoint's ``token_mode`` (one token per integer, PaliGemma ``<loc>`` tokens, or digits), comes out;
the text is parsed, the gripper converted to the Bridge convention, and the bins (or the continuous
actions) are returned as a single step. The terminate integer becomes ``PolicyOutput.terminate``.

Any ``AutoModelForImageTextToText`` checkpoint whose processor takes ``images=`` and ``text=`` works
(the tests use PaliGemma); it is loaded from a local directory, from safetensors only, and never with
``trust_remote_code``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessorList

from vla_policy.backends.rt2.action_text import parse_action_text
from vla_policy.backends.rt2.binning import ActionBinning
from vla_policy.backends.rt2.config import RT2_CONFIG_FILE, RT2Config
from vla_policy.backends.rt2.grammar import ActionGrammarLogitsProcessor, build_grammar
from vla_policy.backends.rt2.random_model import build_random_paligemma, random_rt2_config
from vla_policy.checkpoint import read_json, safetensors_files
from vla_policy.contract import Observation, PolicyOutput
from vla_policy.torch_dtype import resolve_dtype

_MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "token_type_ids", "image_sizes")


class RT2Backend:
    """A loaded VLM + processor + action config, behind the PolicyBackend contract."""

    name = "rt2"

    def __init__(
        self,
        model: Any,
        processor: Any,
        config: RT2Config,
        *,
        device: str = "cpu",
        dtype: Any = None,
        action_kind: str = "discrete",
    ) -> None:
        self.config = config
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.processor = processor
        self.action_space = config.binning.action_space(action_kind)
        self.camera_names = (config.camera,)
        size = processor.image_processor.size
        self.image_size = {config.camera: (int(size["height"]), int(size["width"]))}
        tokenizer = processor.tokenizer
        eos_id = self.model.generation_config.eos_token_id
        eos_id = tokenizer.eos_token_id if eos_id is None else eos_id
        eos_id = eos_id[0] if isinstance(eos_id, (list, tuple)) else eos_id
        separator_id = None
        if config.separator_token is not None:
            separator_id = tokenizer.convert_tokens_to_ids(config.separator_token)
            if separator_id is None or separator_id == tokenizer.unk_token_id:
                raise ValueError(
                    f"rt2 config: separator_token {config.separator_token!r} is not a known token"
                )
        self.grammar = build_grammar(config, tokenizer, int(eos_id), separator_id)
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        if self.grammar.max_token_id >= vocab_size:
            raise ValueError(
                f"rt2: action token id {self.grammar.max_token_id} is outside the model's "
                f"vocabulary of {vocab_size}"
            )
        # One processor for every call: its per-step masks are built once per vocabulary and device.
        self._constrain = ActionGrammarLogitsProcessor(self.grammar, prompt_length=0)
        image_token = getattr(processor, "image_token", None)
        self._image_prefix = image_token if image_token and image_token not in config.prompt_template else ""

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: one observation per step, greedy decoding (deterministic, seed unused)."""

    def _inputs(self, observation: Observation) -> dict[str, Any]:
        camera = self.config.camera
        if camera not in observation.images:
            raise ValueError(
                f"observation lacks camera '{camera}' (has {sorted(observation.images)}); "
                f"the rt2 backend expects {self.camera_names}"
            )
        image = np.asarray(observation.images[camera])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"camera '{camera}': expected an HxWx3 uint8 RGB image, got {image.dtype} {list(image.shape)}"
            )
        prompt = self._image_prefix + self.config.prompt(observation.instruction)
        batch = self.processor(images=[image], text=[prompt], return_tensors="np")
        inputs = {key: torch.from_numpy(batch[key]).to(self.device) for key in _MODEL_INPUTS if key in batch}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def infer(self, observation: Observation) -> PolicyOutput:
        start = time.perf_counter()
        inputs = self._inputs(observation)
        prompt_length = int(inputs["input_ids"].shape[-1])
        self._constrain.prompt_length = prompt_length
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs,
                logits_processor=LogitsProcessorList([self._constrain]),
                max_new_tokens=self.grammar.length,
                do_sample=False,
                eos_token_id=self.grammar.eos_id,
                pad_token_id=self.grammar.eos_id,
            )
        new_tokens = generated[0, prompt_length:].tolist()
        text = self.grammar.tokens_to_text(new_tokens)
        output = output_from_action_text(text, self.config.binning, self.action_space.kind)
        output.info.update(
            generated_tokens=len(new_tokens),
            token_ids=new_tokens,
            infer_ms=(time.perf_counter() - start) * 1e3,
        )
        return output


def output_from_action_text(text: str, binning: ActionBinning, action_kind: str = "discrete") -> PolicyOutput:
    """Action text -> a single-step PolicyOutput in Bridge terms; ValueError on malformed text.

    The chunk holds the Bridge bins (discrete) or the continuous Bridge action; ``info["action"]``
    always carries the continuous one (exact bin values, m / rad / gripper 1 = open).
    """
    parsed = parse_action_text(text, binning.n_bins)  # ValueError on a malformed answer: no action published
    actions = binning.bridge_actions(parsed.bins)
    chunk = binning.bridge_bins(parsed.bins)[None, :] if action_kind == "discrete" else actions[None, :]
    info = {
        "action": actions,
        "action_text": text,
        "model_bins": parsed.bins,  # the model's own order and gripper convention
    }
    return PolicyOutput(chunk=chunk, terminate=parsed.terminate, info=info)


def load_rt2_checkpoint(
    checkpoint: str | Path, device: str = "cpu", dtype: Any = None
) -> tuple[Any, Any, RT2Config]:
    """(model, processor, config) from a local directory; safetensors only, no remote code."""
    root = Path(checkpoint)
    if not root.is_dir():
        raise FileNotFoundError(f"rt2 checkpoint directory missing: {root}")
    config = RT2Config.load(root)
    read_json(root / "config.json", required=("model_type",))
    safetensors_files(root)  # a clear error when no weights are there
    try:
        processor = AutoProcessor.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        model = AutoModelForImageTextToText.from_pretrained(
            root,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=resolve_dtype(dtype, device),
        )
    except (OSError, KeyError) as exc:
        raise ValueError(f"rt2 checkpoint {root}: cannot load the model or processor: {exc}") from exc
    return model, processor, config


def make_rt2_backend(
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    dtype: Any = None,
    action_kind: str = "discrete",
    **_: Any,
) -> RT2Backend:
    """The registry's factory: ``checkpoint`` is a directory with the HF files and rt2_config.json."""
    if not checkpoint:
        raise ValueError(f"rt2 backend needs 'checkpoint': a directory with a HF model and {RT2_CONFIG_FILE}")
    model, processor, config = load_rt2_checkpoint(checkpoint, device=device, dtype=dtype)
    return RT2Backend(model, processor, config, device=device, dtype=dtype, action_kind=action_kind)


def build_random_rt2(
    size: str = "tiny",
    device: str = "cpu",
    dtype: Any = None,
    seed: int = 0,
    compile: bool = False,
    action_kind: str = "discrete",
    token_mode: str = "number_tokens",
    **_: Any,
) -> RT2Backend:
    """The real architecture at ``size`` (see random_model.SIZES) with random weights, for benchmarks.

    ``token_mode`` picks the tokenizer too (random_model.TOKENIZER_OF_MODE): digits and loc_tokens
    decode over a Gemma tokenizer that splits digits.
    """
    if compile:
        raise ValueError("rt2 backend: compile is not supported (generate() runs eagerly)")
    model, processor = build_random_paligemma(size, seed=seed, device=device, token_mode=token_mode)
    config = random_rt2_config(processor, token_mode)
    return RT2Backend(model, processor, config, device=device, dtype=dtype, action_kind=action_kind)
