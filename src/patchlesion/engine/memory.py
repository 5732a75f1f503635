"""The C allocator of a job that runs a model: freed memory kept for the next batch.

On glibc (Linux) every ``free`` of a block above the dynamic mmap threshold returns it to the
system, and the heap's top is trimmed whenever it holds more than twice that free; the next batch's
tensors of the same size then fault their pages in again. A CPU training job of the demo made
about a million page faults that way and spent a tenth of its time in the kernel
(docs/performance.md §10). :func:`keep_freed_memory` raises both limits once, before the job's
first tensor: blocks under :data:`MMAP_THRESHOLD` come from the heap and are reused, and up to
:data:`TRIM_THRESHOLD` of free heap is kept. The arithmetic is the same (PyTorch aligns its CPU
tensors itself; tests/test_memory.py checks a model bit for bit); the peak resident memory grows by
up to the kept free memory.

Both limits are set together: either alone switches off glibc's dynamic threshold and makes things
worse (a demo GRU job: 3.4 s in the kernel by default, 0.9 s with both, 7.6 s with the mmap
threshold alone, 27 s with the trim threshold alone). Nothing is changed where the C library is
not glibc, or where ``GLIBC_TUNABLES`` already sets a ``glibc.malloc`` tunable (the user's choice).
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

log = logging.getLogger("patchlesion")

#: Blocks smaller than this come from the heap (glibc's default: dynamic, 128 KiB up to 32 MiB).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the heap's top kept rather than returned (glibc's default: twice the mmap threshold).
TRIM_THRESHOLD = 256 << 20
#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module's docstring); whether
    they were set."""
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator as it is
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # an older glibc caps the mmap threshold at 32 MiB (its DEFAULT_MMAP_THRESHOLD_MAX on 64 bits)
    if not any(mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in (MMAP_THRESHOLD, min(MMAP_THRESHOLD, 32 << 20))):
        log.debug("mallopt refused the mmap threshold; the allocator is left as it is")
        return False
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1  # glibc always accepts it
