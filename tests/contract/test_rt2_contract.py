"""The RT-2 backend under the shared contract: a tiny random PaliGemma saved and loaded back, in every
token mode (number_tokens and token_table on a word tokenizer, loc_tokens and digits on a Gemma one)."""

from __future__ import annotations

import pytest
from backend_contract import BackendContract, make_observation

from vla_policy.backends.rt2.config import TOKEN_MODES
from vla_policy.backends.rt2.random_model import save_tiny_rt2_checkpoint
from vla_policy.contract import make_backend as make_registered


@pytest.mark.parametrize("token_mode", TOKEN_MODES)
class TestRT2Contract(BackendContract):
    @pytest.fixture()
    def backend(self, tmp_path, token_mode):
        checkpoint = save_tiny_rt2_checkpoint(tmp_path / "rt2", token_mode=token_mode, seed=0)
        return make_registered(
            "rt2", checkpoint=str(checkpoint), device="cpu", action_kind="discrete", chunk_horizon=4
        )

    def test_single_step_of_bin_indices_with_the_continuous_action_in_info(self, backend):
        output = backend.infer(make_observation(backend))
        assert output.chunk.shape == (1, 7)
        assert output.info["action"].shape == (7,)
        assert isinstance(output.terminate, bool)
