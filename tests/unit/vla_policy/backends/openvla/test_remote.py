"""The opt-in remote-code path on this transformers: a tiny checkpoint shipping its own modelling code.

The checkpoint is written like the OpenVLA release: config.json's ``auto_map`` names the model class
under ``AutoModelForVision2Seq`` (an auto class transformers 5 no longer has), and the class's
``predict_action(input_ids, unnorm_key, **generate_kwargs)`` returns the unnormalised action. The
shipped class records what it was given, so the test sees the inputs the backend built.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vla_common.action_space import decode_bins, unnormalize
from vla_policy.backends.openvla.backend import make_openvla_backend
from vla_policy.backends.openvla.loading import load_tokenizer
from vla_policy.backends.openvla.processing import ImageOptions, pixel_values, prompt_token_ids
from vla_policy.backends.openvla.remote import model_class_reference
from vla_policy.checkpoint import load_norm_stats
from vla_policy.contract import Observation

IMAGE = np.random.default_rng(1).integers(0, 256, (180, 240, 3), dtype=np.uint8)
BINS = np.array([0, 17, 100, 127, 200, 254, 254])

SHIPPED_MODEL = """
import numpy as np
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinyRemoteConfig(PretrainedConfig):
    model_type = "openvla"


class TinyRemoteVLA(PreTrainedModel):
    config_class = TinyRemoteConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.post_init()

    def predict_action(self, input_ids=None, unnorm_key=None, **kwargs):
        self.seen = {"input_ids": input_ids, "unnorm_key": unnorm_key, **kwargs}
        return np.asarray(self.config.returned_action)
"""


@pytest.fixture()
def remote_checkpoint(checkpoint_dir, tmp_path):
    root = shutil.copytree(checkpoint_dir, tmp_path / "remote")
    (root / "modeling_tiny_remote.py").write_text(SHIPPED_MODEL)
    config = json.loads((root / "config.json").read_text())
    _, stats = load_norm_stats(root / "dataset_statistics.json", "bridge_orig")
    config["returned_action"] = unnormalize(decode_bins(BINS, 256), stats).tolist()
    config["auto_map"] = {
        "AutoConfig": "modeling_tiny_remote.TinyRemoteConfig",
        "AutoModelForVision2Seq": "modeling_tiny_remote.TinyRemoteVLA",
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_the_shipped_class_runs_on_native_inputs(remote_checkpoint, caplog):
    with caplog.at_level("WARNING"):
        backend = make_openvla_backend(
            checkpoint=str(remote_checkpoint),
            unnorm_key="bridge_orig",
            use_remote_code=True,
            center_crop=True,
        )
    assert "executes the modelling code" in caplog.text
    assert type(backend.model).__name__ == "TinyRemoteVLA"
    output = backend.infer(Observation(1, {"primary": IMAGE}, "Open the Drawer"))
    np.testing.assert_array_equal(output.chunk, BINS[None])  # the returned action re-binned exactly
    seen = backend.model.seen
    assert seen["unnorm_key"] == "bridge_orig" and seen["do_sample"] is False
    tokenizer = load_tokenizer(remote_checkpoint)
    suffix = backend.config.prompt_suffix_token_id
    assert seen["input_ids"].tolist() == [prompt_token_ids(tokenizer, "Open the Drawer", suffix)]
    assert seen["attention_mask"].tolist() == [[1] * seen["input_ids"].shape[1]]
    expected = pixel_values(IMAGE, 224, ImageOptions(center_crop=True))
    torch.testing.assert_close(seen["pixel_values"][0], torch.from_numpy(expected), rtol=0, atol=0)


def test_shipped_code_that_does_not_import_names_the_cause(remote_checkpoint):
    source = (remote_checkpoint / "modeling_tiny_remote.py").read_text()
    (remote_checkpoint / "modeling_tiny_remote.py").write_text("import timm_0_9_not_installed\n" + source)
    with pytest.raises(ImportError, match=r"does not import with transformers .*use_remote_code=False"):
        make_openvla_backend(
            checkpoint=str(remote_checkpoint), unnorm_key="bridge_orig", use_remote_code=True
        )


def test_auto_map_without_a_model_class_is_named():
    assert model_class_reference({"AutoModelForVision2Seq": "m.C"}, "cfg") == "m.C"
    assert model_class_reference({"AutoModel": ["m.D", None]}, "cfg") == "m.D"
    with pytest.raises(ValueError, match=r"cfg: 'auto_map' names no model class \(has \['AutoConfig'\]"):
        model_class_reference({"AutoConfig": "m.Config"}, "cfg")
