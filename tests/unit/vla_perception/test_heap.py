"""The fixed mmap threshold: set in a child process (it changes the process's allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vla_perception.heap import fix_mmap_threshold

CHILD = """
import numpy as np
from vla_perception.heap import fix_mmap_threshold

def rss_kb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])

if {fixed}:
    assert fix_mmap_threshold()
big = np.ones(8_000_000, np.uint8)
del big  # by default glibc now serves blocks up to 8 MB from the heap
frames, pinned = [], []
for _ in range(40):
    frames.append(np.ones(2_000_000, np.uint8))  # a frame
    pinned.append(bytes(1000))  # a small long-lived object allocated after it
frames.clear()
print(rss_kb())
"""


def _rss_after_churn_kb(fixed: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(fixed=fixed)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt, /proc")
def test_freed_frames_go_back_to_the_system():
    fixed, dynamic = _rss_after_churn_kb(fixed=True), _rss_after_churn_kb(fixed=False)
    assert fixed + 40_000 < dynamic, (fixed, dynamic)  # measured: 28 MB against 106 MB (80 MB of frames)


def test_a_threshold_must_be_positive():
    with pytest.raises(ValueError, match="threshold_bytes 0 must be positive"):
        fix_mmap_threshold(0)
