"""roundhouse.malloc: the thresholds take effect in a fresh process, and an operator's own
malloc settings are left alone. Each case runs in a child: mallopt changes the whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only"
)

# Allocates a 512 KiB block (over glibc's default 128 KiB mmap threshold, under ours) and
# reports whether it came from the heap: the [heap] mapping grew by at least its size.
_PROBE = """
import json, sys
from roundhouse import malloc

def heap_size():
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                return end - start
    return 0

tuned = malloc.tune() if sys.argv[1] == "tune" else None
before = heap_size()
block = bytearray(512 * 1024)
print(json.dumps({"tuned": tuned, "from_heap": heap_size() - before >= 512 * 1024}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_tuned_a_half_mebibyte_block_comes_from_the_heap() -> None:
    assert _probe("tune") == {"tuned": True, "from_heap": True}


def test_untouched_glibc_maps_the_same_block_on_its_own() -> None:
    # The control: without tune() the block is mapped apart, so the probe can tell the two.
    assert _probe("plain") == {"tuned": None, "from_heap": False}


@pytest.mark.parametrize(
    "setting",
    [
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072"),
    ],
)
def test_an_operators_own_setting_is_left_alone(setting: tuple[str, str]) -> None:
    name, value = setting
    assert _probe("tune", **{name: value}) == {"tuned": False, "from_heap": False}
