"""Keep a long-running node's memory at what it holds, not at its high-water mark (glibc).

glibc serves a large allocation with mmap and returns it to the system when freed, but after the
first such free it raises its mmap threshold to that block's size (up to 32 MiB). From then on,
large buffers (an image and its copies, a huge /vla/action string the actuation refuses by its
size) come from the heap, where blocks of varying sizes fragment it and freed memory stays
resident: measured on the perception node under fuzzed frames, RSS grew from 113 MB to 175-220 MB;
the actuation grew 102 -> 109 MB in a 3-minute soak of fuzzed actions up to 24 MB. A fixed
threshold keeps every buffer of ``MMAP_THRESHOLD_BYTES`` or more on mmap, so freeing it gives the
memory back.
"""

from __future__ import annotations

import ctypes
import ctypes.util

MMAP_THRESHOLD_BYTES = 256 * 1024  # a 160x120 rgb8 frame is 57 KB, 640x480 is 921 KB
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap and trim thresholds to ``threshold_bytes`` for this process (which also
    turns off the dynamic threshold). False where there is no glibc ``mallopt`` (nothing changes)."""
    if threshold_bytes <= 0:
        raise ValueError(f"heap: threshold_bytes {threshold_bytes} must be positive")
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (
        mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1 and mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1
    )
