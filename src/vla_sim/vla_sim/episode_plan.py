"""The episode plan a sim node can run instead of seed + i (``vla-stack eval`` writes it; pure)."""

from __future__ import annotations

import json

PLAN_KEYS = {
    "seed",
    "family",
    "target_object",
    "base_object",
    "direction",
    "instruction_text",
    "max_steps",
    "template_index",
}


def load_episode_plan(path: str) -> list[dict]:
    """Read and check an episode plan file (errors name the file, the entry and the key)."""
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"episode_plan_file {path!r}: cannot read a JSON list of episodes: {exc}") from exc
    if not isinstance(plan, list) or not plan:
        raise ValueError(f"episode_plan_file {path!r}: expected a non-empty JSON list of episodes")
    for i, entry in enumerate(plan):
        if not isinstance(entry, dict) or "seed" not in entry:
            raise ValueError(f"episode_plan_file {path!r}: entry {i} needs at least a 'seed', got {entry!r}")
        unknown = sorted(set(entry) - PLAN_KEYS)
        if unknown:
            raise ValueError(f"episode_plan_file {path!r}: entry {i} has unknown key(s) {unknown}")
    return plan
