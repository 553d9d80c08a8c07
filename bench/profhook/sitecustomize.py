"""A deterministic profile of a target's hot path, switched on and off from outside.

``callcost.py --profile`` (or ``--gc``) puts this directory on the target's ``PYTHONPATH`` with
``ROUNDHOUSE_BENCH_PROFILE=FILE``: SIGUSR1 starts the window, SIGUSR2 ends it and writes FILE:
the ``cProfile`` stats (unless ``ROUNDHOUSE_BENCH_CPROFILE=0``), and ``FILE.gc.json``, every
garbage collection of the window (generation, objects collected, pause in ms). Processes without
the variable (the upstream the target starts inherits the path) are left alone.
"""

from __future__ import annotations

import os

_OUT = os.environ.pop("ROUNDHOUSE_BENCH_PROFILE", "")
_CPROFILE = os.environ.pop("ROUNDHOUSE_BENCH_CPROFILE", "1") != "0"

if _OUT:
    import cProfile
    import gc
    import json
    import signal
    import time
    from types import FrameType
    from typing import Any

    _profile = cProfile.Profile()
    _collections: list[dict[str, Any]] = []
    _began = [0.0]
    _on = [False]

    def _gc_callback(phase: str, info: dict[str, Any]) -> None:
        if not _on[0]:
            return
        if phase == "start":
            _began[0] = time.perf_counter()
        else:
            pause = (time.perf_counter() - _began[0]) * 1000
            _collections.append(
                {"generation": info["generation"], "collected": info["collected"], "ms": pause}
            )

    gc.callbacks.append(_gc_callback)

    def _start(signum: int, frame: FrameType | None) -> None:
        _collections.clear()
        _on[0] = True
        if _CPROFILE:
            _profile.enable()

    def _stop(signum: int, frame: FrameType | None) -> None:
        _on[0] = False
        if _CPROFILE:
            _profile.disable()
        with open(_OUT + ".gc.json", "w") as out:
            json.dump({"collections": _collections, "tracked": len(gc.get_objects())}, out)
        if _CPROFILE:
            _profile.dump_stats(_OUT)
        else:
            with open(_OUT, "w") as marker:
                marker.write("gc only\n")

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
