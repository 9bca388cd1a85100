"""Our half of the release-layout cross-check (runs in .venv): the synthetic release, the T5 config
upstream's LanguageTokenizer needs for its tiny encoder, and our config.json at octo-small-1.5's
settings. Usage: python crosscheck/octo_release/write.py WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vla_policy.backends.octo.config import octo_preset
from vla_policy.backends.octo.synthetic_release import (
    release_config,
    synthetic_config,
    write_synthetic_release,
)


def main(work: Path) -> None:
    config = synthetic_config()
    write_synthetic_release(work / "release", config, seed=0)
    # upstream's LanguageTokenizer reads AutoConfig.from_pretrained(encoder): a local directory with the
    # release's T5 dimensions stands in for the hub's "t5-base" (the release itself names "t5-base")
    t5 = work / "t5"
    t5.mkdir()
    t5_config = {
        **config.t5_config,
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "num_decoder_layers": config.t5_config["num_layers"],
        "is_encoder_decoder": True,
        "decoder_start_token_id": 0,
    }
    (t5 / "config.json").write_text(json.dumps(t5_config, indent=1))
    (work / "small_config.json").write_text(json.dumps(release_config(octo_preset("small")), indent=1))
    print(f"[crosscheck/octo_release] wrote {work / 'release'}, {t5}, {work / 'small_config.json'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
