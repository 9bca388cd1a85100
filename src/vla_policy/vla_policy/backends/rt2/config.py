"""The RT-2 checkpoint's action configuration (``rt2_config.json`` beside the Hugging Face files).

A checkpoint directory holds a Hugging Face vision-language model (``config.json``, safetensors
weights, processor and tokenizer files) plus this file, which says how the model's answers become
actions. Example::

    {"token_mode": "number_tokens",                # or "token_table" with "action_token_ids"
     "action_ranges": {"low": [7 values], "high": [7 values], "bin_decoding": "rt1_levels"},
     "gripper_convention": "rt1",                  # or "bridge"
     "prompt_template": "Q: what action should the robot take to {instruction}? A:",
     "camera": "primary", "separator_token": null, "lowercase_instruction": true}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_policy.backends.rt2.binning import ActionBinning
from vla_policy.checkpoint import read_json, write_json

RT2_CONFIG_FILE = "rt2_config.json"
TOKEN_MODES = ("number_tokens", "token_table")
DEFAULT_PROMPT = "Q: what action should the robot take to {instruction}? A:"
REQUIRED_KEYS = ("token_mode", "action_ranges", "gripper_convention")
_RANGE_KEYS = ("low", "high", "bin_decoding")


@dataclass(frozen=True)
class RT2Config:
    """How a vision-language model's answer text becomes a Bridge action."""

    token_mode: str  # "number_tokens" (PaLI-X: integers are tokens) or "token_table" (PaLM-E)
    binning: ActionBinning  # per-dimension ranges, bin decoding, gripper convention
    action_token_ids: tuple[int, ...] | None = None  # token_table: id of integer k at index k
    separator_token: str | None = None  # a token between integers, if the vocabulary needs one
    prompt_template: str = DEFAULT_PROMPT  # must contain "{instruction}"
    lowercase_instruction: bool = True
    camera: str = "primary"  # the one camera the model sees

    def __post_init__(self) -> None:
        if self.token_mode not in TOKEN_MODES:
            raise ValueError(f"rt2 config: token_mode '{self.token_mode}' is not one of {TOKEN_MODES}")
        if self.token_mode == "token_table" and self.action_token_ids is None:
            raise ValueError("rt2 config: token_mode 'token_table' needs 'action_token_ids' (256 token ids)")
        if "{instruction}" not in self.prompt_template:
            raise ValueError(f"rt2 config: prompt_template {self.prompt_template!r} lacks '{{instruction}}'")
        if not self.camera:
            raise ValueError("rt2 config: camera must be a non-empty name")

    def prompt(self, instruction: str) -> str:
        text = instruction.strip().rstrip(".?!")
        if self.lowercase_instruction:
            text = text.lower()
        return self.prompt_template.replace("{instruction}", text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_mode": self.token_mode,
            "action_token_ids": None if self.action_token_ids is None else list(self.action_token_ids),
            "separator_token": self.separator_token,
            "action_ranges": {
                "low": list(self.binning.low),
                "high": list(self.binning.high),
                "bin_decoding": self.binning.bin_decoding,
            },
            "gripper_convention": self.binning.gripper_convention,
            "prompt_template": self.prompt_template,
            "lowercase_instruction": self.lowercase_instruction,
            "camera": self.camera,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "rt2 config") -> RT2Config:
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"{source}: missing key(s) {missing}; present: {sorted(data)}")
        ranges = data["action_ranges"]
        if not isinstance(ranges, dict) or any(key not in ranges for key in _RANGE_KEYS):
            have = sorted(ranges) if isinstance(ranges, dict) else type(ranges).__name__
            raise ValueError(f"{source}: 'action_ranges' needs keys {list(_RANGE_KEYS)}; has {have}")
        table = data.get("action_token_ids")
        try:
            return cls(
                token_mode=str(data["token_mode"]),
                binning=ActionBinning(
                    low=tuple(float(v) for v in ranges["low"]),
                    high=tuple(float(v) for v in ranges["high"]),
                    bin_decoding=str(ranges["bin_decoding"]),
                    gripper_convention=str(data["gripper_convention"]),
                ),
                action_token_ids=None if table is None else tuple(int(i) for i in table),
                separator_token=data.get("separator_token"),
                prompt_template=str(data.get("prompt_template", DEFAULT_PROMPT)),
                lowercase_instruction=bool(data.get("lowercase_instruction", True)),
                camera=str(data.get("camera", "primary")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> RT2Config:
        path = Path(checkpoint_dir) / RT2_CONFIG_FILE
        return cls.from_dict(read_json(path, required=REQUIRED_KEYS), source=str(path))

    def save(self, checkpoint_dir: str | Path) -> None:
        write_json(Path(checkpoint_dir) / RT2_CONFIG_FILE, self.to_dict())
