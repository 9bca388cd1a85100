"""The backend's ``resize`` and ``center_crop`` options reach the preprocessing of every call."""

from __future__ import annotations

import numpy as np
import pytest

from vla_policy.backends.openvla import backend as backend_module
from vla_policy.backends.openvla.backend import make_openvla_backend
from vla_policy.backends.openvla.processing import ImageOptions, pixel_values
from vla_policy.contract import Observation

IMAGE = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_backend_options_reach_the_preprocessing(checkpoint_dir, monkeypatch):
    seen = []

    def recording_pixel_values(image, size, options):
        seen.append(options)
        return pixel_values(image, size, options)

    monkeypatch.setattr(backend_module, "pixel_values", recording_pixel_values)
    backend = make_openvla_backend(
        checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", resize="jpeg-lanczos3", center_crop=True
    )
    backend.infer(Observation(1, {"primary": IMAGE}, "open the drawer"))
    assert seen == [ImageOptions(resize="jpeg-lanczos3", center_crop=True)]
    default = make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig")
    assert default.image_options == ImageOptions(resize="bicubic", center_crop=False)
    with pytest.raises(ValueError, match="resize 'area' is not one of"):
        make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", resize="area")
