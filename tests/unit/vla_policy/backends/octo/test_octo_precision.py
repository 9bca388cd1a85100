"""Octo's precision: float32 unless asked, also on CUDA (with TF32), and time features kept in float32."""

from __future__ import annotations

import pytest
import torch

from vla_policy.backends.octo.action_head import DiffusionActionHead, FourierFeatures
from vla_policy.backends.octo.backend import octo_dtype
from vla_policy.backends.octo.config import octo_preset


@pytest.fixture()
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_octo_runs_in_float32_unless_asked_and_allows_tf32_on_cuda(tf32_flags):
    assert octo_dtype(None, "cpu") == torch.float32
    assert octo_dtype(None, "cuda:0") == torch.float32  # not the stack's bfloat16 CUDA default
    assert torch.backends.cuda.matmul.allow_tf32
    assert octo_dtype("bfloat16", "cuda") == torch.bfloat16
    assert octo_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        octo_dtype("float16", "cpu")


def test_time_features_stay_float32_in_a_bfloat16_head():
    torch.manual_seed(0)
    head = DiffusionActionHead(octo_preset("tiny"))
    head.time_preprocess.kernel.data.mul_(3.0)  # trained kernels are larger than the init's
    time = torch.arange(20, dtype=torch.float32)[:, None]
    exact = head.time_preprocess(time)
    head = head.to(torch.bfloat16)
    assert head.time_preprocess.kernel.dtype == torch.float32
    assert head.cond_encoder.dense_0.weight.dtype == torch.bfloat16
    kept = head.time_preprocess(time.to(torch.bfloat16))
    assert kept.dtype == torch.bfloat16
    assert (kept.float() - exact).abs().max() < 1e-2  # the output's rounding only
    rounded = FourierFeatures(exact.shape[-1])
    rounded.kernel.data = head.time_preprocess.kernel.data.to(torch.bfloat16).float()
    assert (rounded(time) - exact).abs().max() > 0.05  # what a bfloat16 kernel would have done
