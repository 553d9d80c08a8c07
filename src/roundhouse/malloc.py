"""glibc's malloc set for a process that moves large JSON messages back and forth.

With glibc's defaults a block of 128 KiB or more is mapped on its own (``mmap``) and the heap is
given back to the kernel (``brk``) whenever more than 128 KiB lies free at its top. glibc raises
both thresholds by itself once a mapped block is freed, but only for blocks larger than the last
one, so a process that keeps allocating the same sizes can stay below them for good. The
gateway did: a 64 KiB ``tools/call`` through it allocated its message strings at the top of the
heap, freed them when the call ended, and the heap shrank and grew again four times a call —
each growth paid in page faults on zeroed pages. That made the gateway's system time per call
162 to 193 µs (107 to 113 µs with the settings below) and its CPU per 64 KiB call 1.5 times the
ceiling's, where with the settings it is 1.15 times (docs/PERFORMANCE.md).

:func:`tune` sets fixed thresholds instead: blocks under 1 MiB come from the heap, and up to
4 MiB may lie free at its top before it is trimmed. The cost is at most those 4 MiB of resident
memory kept after a burst of large messages. Only the gateway's own commands call it (``up``,
``stdio``), never the library: an embedding program's allocator is its own business. A setting
the operator made through the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``
or ``GLIBC_TUNABLES``) is left as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune"]

#: mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 1 << 20
TRIM_THRESHOLD: Final = 4 << 20

_OPERATOR_SETTINGS: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune() -> bool:
    """Set the thresholds in this process; True if they were set (glibc, nothing in the
    environment says otherwise), False if nothing was changed."""
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in _OPERATOR_SETTINGS
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success; musl's is a stub that answers 0 and does nothing.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
