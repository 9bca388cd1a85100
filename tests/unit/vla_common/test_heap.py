"""The fixed mmap threshold: set in a child process (it changes the process's allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vla_common.heap import fix_mmap_threshold

# What the actuation sees in the soak: huge /vla/action strings (refused by their size, then freed)
# between small long-lived objects.
CHILD = """
from vla_common.heap import fix_mmap_threshold

def rss_kb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])

if {fixed}:
    assert fix_mmap_threshold()
big = "x" * 8_000_000
del big  # by default glibc now serves blocks up to 8 MB from the heap
messages, pinned = [], []
for k in range(40):
    messages.append(str(k) * 2_000_000)  # a huge action message
    pinned.append(bytes(1000))  # a small long-lived object allocated after it
messages.clear()
print(rss_kb())
"""


def _rss_after_churn_kb(fixed: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(fixed=fixed)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt, /proc")
def test_freed_messages_go_back_to_the_system():
    fixed, dynamic = _rss_after_churn_kb(fixed=True), _rss_after_churn_kb(fixed=False)
    assert fixed + 40_000 < dynamic, (fixed, dynamic)


def test_a_threshold_must_be_positive():
    with pytest.raises(ValueError, match="threshold_bytes 0 must be positive"):
        fix_mmap_threshold(0)
