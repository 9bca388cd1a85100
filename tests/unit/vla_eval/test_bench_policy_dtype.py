"""``bench policy`` reports the dtype the backend really runs in (its own default unless --dtype)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from vla_eval.bench_policy import used_dtype


def test_the_reported_dtype_is_the_weights_and_tf32_is_named():
    bf16 = SimpleNamespace(model=nn.Linear(2, 2).to(torch.bfloat16))
    fp32 = SimpleNamespace(name="octo", model=nn.Linear(2, 2))
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert used_dtype(bf16, "cuda") == "bfloat16"
        assert used_dtype(fp32, "cuda") == "float32 (TF32)"
        assert used_dtype(fp32, "cpu") == "float32"
        torch.backends.cuda.matmul.allow_tf32 = False
        assert used_dtype(fp32, "cuda") == "float32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
