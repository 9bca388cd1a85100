"""The RT-2 checkpoint's action configuration (``rt2_config.json`` beside the Hugging Face files).

A checkpoint directory holds a Hugging Face vision-language model (``config.json``, safetensors
weights, processor and tokenizer files) plus this file, which says how the model's answers become
actions. Example::

    {"token_mode": "digits",                       # how the model writes an integer, see below
     "action_ranges": {"low": [7 values], "high": [7 values], "bin_decoding": "rt1_levels",
                       "n_bins": 256},
     "gripper_convention": "rt1",                  # or "bridge"
     "prompt_template": "Q: what action should the robot take to {instruction}? A:",
     "camera": "primary", "lowercase_instruction": true}

Token modes (:mod:`~vla_policy.backends.rt2.grammar` builds the matching decoding grammar):

- ``"number_tokens"``: one vocabulary token per integer ("128", "▁128", "Ġ128"; PaLI-X);
- ``"token_table"``: one token per integer, ids listed in ``"action_token_ids"`` (PaLM-E);
- ``"loc_tokens"``: one token per integer named ``"action_token_format"`` filled with the integer,
  by default PaliGemma's ``"<loc{:04d}>"`` (``<loc0000>``..``<loc1023>``, so n_bins <= 1024);
- ``"digits"``: decimal text over several tokens (tokenizers that split digits: Llama 2, Gemma,
  PaliGemma, Qwen2), integers separated by a space; ``"number_width"`` 0 (default) forbids leading
  zeros, w > 0 writes every bin with exactly w digits ("007").

The one-token modes may put ``"separator_token"`` between integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_policy.backends.rt2.action_text import N_ACTION_BINS, integer_spellings
from vla_policy.backends.rt2.binning import ActionBinning
from vla_policy.checkpoint import read_json, write_json

RT2_CONFIG_FILE = "rt2_config.json"
SINGLE_TOKEN_MODES = ("number_tokens", "token_table", "loc_tokens")  # one token per integer
TOKEN_MODES = (*SINGLE_TOKEN_MODES, "digits")
DEFAULT_ACTION_TOKEN_FORMAT = "<loc{:04d}>"  # PaliGemma's location tokens <loc0000>..<loc1023>
DEFAULT_PROMPT = "Q: what action should the robot take to {instruction}? A:"
REQUIRED_KEYS = ("token_mode", "action_ranges", "gripper_convention")
_RANGE_KEYS = ("low", "high", "bin_decoding")


@dataclass(frozen=True)
class RT2Config:
    """How a vision-language model's answer text becomes a Bridge action."""

    token_mode: str  # one of TOKEN_MODES (see the module docstring)
    binning: ActionBinning  # per-dimension ranges, bin count and decoding, gripper convention
    action_token_ids: tuple[int, ...] | None = None  # token_table: id of integer k at index k
    action_token_format: str = DEFAULT_ACTION_TOKEN_FORMAT  # loc_tokens: name of integer k
    number_width: int = 0  # digits: 0 = no leading zeros, w = bins zero-padded to w digits
    separator_token: str | None = None  # one-token modes: a token between integers, if needed
    prompt_template: str = DEFAULT_PROMPT  # must contain "{instruction}"
    lowercase_instruction: bool = True
    camera: str = "primary"  # the one camera the model sees

    def __post_init__(self) -> None:
        self._check_token_mode()
        if "{instruction}" not in self.prompt_template:
            raise ValueError(f"rt2 config: prompt_template {self.prompt_template!r} lacks '{{instruction}}'")
        if not self.camera:
            raise ValueError("rt2 config: camera must be a non-empty name")

    def _check_token_mode(self) -> None:
        """The mode is known and has the fields it reads; fields of another mode are an error."""
        if self.token_mode not in TOKEN_MODES:
            raise ValueError(f"rt2 config: token_mode '{self.token_mode}' is not one of {TOKEN_MODES}")
        n_bins = self.binning.n_bins
        if self.token_mode == "token_table":
            if self.action_token_ids is None or len(self.action_token_ids) != n_bins:
                have = "none" if self.action_token_ids is None else len(self.action_token_ids)
                raise ValueError(
                    f"rt2 config: token_mode 'token_table' needs 'action_token_ids' ({n_bins} token ids, "
                    f"one per bin); it has {have}"
                )
        elif self.action_token_ids is not None:
            raise ValueError(
                f"rt2 config: 'action_token_ids' is only read in token_mode 'token_table', "
                f"not '{self.token_mode}'; remove it or change the mode"
            )
        if self.token_mode == "digits" and self.separator_token is not None:
            raise ValueError(
                f"rt2 config: token_mode 'digits' separates integers with a space; "
                f"separator_token {self.separator_token!r} applies to {SINGLE_TOKEN_MODES} only"
            )
        if self.token_mode == "loc_tokens":
            _check_token_format(self.action_token_format, n_bins)
        integer_spellings(n_bins, self.number_width)  # ValueError on a width that cannot hold the bins

    def prompt(self, instruction: str) -> str:
        text = instruction.strip().rstrip(".?!")
        if self.lowercase_instruction:
            text = text.lower()
        return self.prompt_template.replace("{instruction}", text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_mode": self.token_mode,
            "action_token_ids": None if self.action_token_ids is None else list(self.action_token_ids),
            "action_token_format": self.action_token_format,
            "number_width": self.number_width,
            "separator_token": self.separator_token,
            "action_ranges": {
                "low": list(self.binning.low),
                "high": list(self.binning.high),
                "bin_decoding": self.binning.bin_decoding,
                "n_bins": self.binning.n_bins,
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
                    n_bins=_integer(ranges.get("n_bins", N_ACTION_BINS), "action_ranges.n_bins"),
                ),
                action_token_ids=None if table is None else tuple(int(i) for i in table),
                action_token_format=str(data.get("action_token_format", DEFAULT_ACTION_TOKEN_FORMAT)),
                number_width=_integer(data.get("number_width", 0), "number_width"),
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


def _integer(value: Any, key: str) -> int:
    """A JSON integer (not a float or a bool), or a ValueError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{key}' must be an integer, got {value!r}")
    return value


def _check_token_format(token_format: str, n_bins: int) -> None:
    """``token_format.format(k)`` must give n_bins different names (e.g. "<loc{:04d}>")."""
    try:
        names = {token_format.format(k) for k in range(n_bins)}
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(
            f"rt2 config: action_token_format {token_format!r} cannot be filled with an integer ({exc}); "
            f"write it like {DEFAULT_ACTION_TOKEN_FORMAT!r}"
        ) from None
    if len(names) != n_bins:
        raise ValueError(
            f"rt2 config: action_token_format {token_format!r} gives {len(names)} different names for "
            f"{n_bins} bins; it needs a field for the integer, like {DEFAULT_ACTION_TOKEN_FORMAT!r}"
        )
