"""chunk_join: the join extents (one rule for every backend) and the prefix-consistent blend of the
chunking backends that do not guide their sampler."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_policy.chunk_join import blend_prefix, join_extent, soft_mask
from vla_policy.contract import CommittedActions


@st.composite
def chunk_and_committed(draw):
    horizon = draw(st.integers(1, 12))
    dim = draw(st.integers(1, 7))
    k = draw(st.integers(1, 15))
    frozen = draw(st.integers(0, k))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(horizon, dim)), CommittedActions(rng.normal(size=(k, dim)), frozen)


@settings(max_examples=200, deadline=None)
@given(chunk_and_committed())
def test_blend_takes_the_frozen_prefix_exactly_blends_the_overlap_and_keeps_the_tail(case):
    chunk, committed = case
    original = chunk.copy()
    out = blend_prefix(chunk, committed)
    np.testing.assert_array_equal(chunk, original)  # not modified in place
    horizon, k = chunk.shape[0], len(committed.actions)
    extent = join_extent(committed, horizon)
    frozen, overlap = extent.frozen, extent.overlap
    assert frozen == min(committed.frozen_steps, horizon - 1)
    assert frozen + overlap == min(k, horizon)
    assert extent.clamped == (committed.frozen_steps > horizon - 1)
    np.testing.assert_array_equal(out[:frozen], committed.actions[:frozen])
    np.testing.assert_array_equal(out[frozen + overlap :], chunk[frozen + overlap :])
    w = soft_mask(frozen, overlap, horizon)[frozen : frozen + overlap, None]
    lo = slice(frozen, frozen + overlap)
    np.testing.assert_allclose(out[lo], w * committed.actions[lo] + (1 - w) * chunk[lo], rtol=0, atol=1e-12)


def test_blend_by_hand_on_a_small_case():
    chunk = np.zeros((5, 1))
    committed = CommittedActions(np.ones((4, 1)), 2)
    out = blend_prefix(chunk, committed)
    w = soft_mask(2, 2, 5)  # overlap = min(4, 5) - 2
    assert out[:, 0].tolist() == [1.0, 1.0, w[2], w[3], 0.0]
    assert 1.0 > w[2] > w[3] > 0.0


def test_a_frozen_prefix_covering_the_chunk_is_clamped_to_leave_one_new_step():
    chunk = np.zeros((3, 2))
    committed = CommittedActions(np.ones((5, 2)), 5)
    extent = join_extent(committed, 3)
    assert (extent.frozen, extent.overlap, extent.clamped) == (2, 1, True)
    assert extent.info() == {"rtc_frozen": 2, "rtc_overlap": 1, "rtc_frozen_clamped": True}
    out = blend_prefix(chunk, committed)
    assert np.all(out[:2] == 1.0) and 0.0 < out[2, 0] < 1.0


@pytest.mark.parametrize(
    ("chunk", "committed", "message"),
    [
        (
            np.zeros((4, 7)),
            CommittedActions(np.zeros((4, 6)), 1),
            r"observation\.committed: actions are 6 wide",
        ),
        (np.zeros(7), CommittedActions(np.zeros((4, 7)), 1), r"chunk must be H x D"),
        (np.full((4, 7), np.nan), CommittedActions(np.zeros((4, 7)), 1), r"non-finite"),
    ],
)
def test_bad_inputs_are_refused_naming_them(chunk, committed, message):
    with pytest.raises(ValueError, match=message):
        blend_prefix(chunk, committed)


def test_join_extent_refuses_a_bad_horizon():
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        join_extent(CommittedActions(np.zeros((2, 1)), 0), 0)


def test_chunk_join_does_not_import_torch():
    code = "import sys, vla_policy.chunk_join; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
