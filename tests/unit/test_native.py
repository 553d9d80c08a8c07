"""The compiled hot modules: used when they match the sources, never when a source is newer.

Each case runs a fresh interpreter on a copy of the package (with its compiled files), so the
copy's files can be touched without disturbing this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roundhouse import _native

PROBE = (
    "import roundhouse.gateway.service as s, roundhouse.upstream.stdio as t; "
    "print(s.__file__); print(t.__file__)"
)

pytestmark = pytest.mark.skipif(
    not _native._shared_libraries(),
    reason="the hot modules are not compiled here (make install compiles them)",
)


def copy_package(tmp_path: Path) -> Path:
    """src/ with the package and the shared library, mtimes kept."""
    root = tmp_path / "src"
    shutil.copytree(
        _native.PACKAGE_ROOT, root / "roundhouse", ignore=shutil.ignore_patterns("__pycache__")
    )
    for library in _native._shared_libraries():
        shutil.copy2(library, root / library.name)
    return root


def probe(src: Path) -> tuple[list[str], str]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr


def test_every_listed_module_has_its_compiled_twin_here() -> None:
    for module in _native.MODULES:
        assert _native.twins(module), module


def test_compiled_modules_are_used_when_no_source_is_newer(tmp_path: Path) -> None:
    files, stderr = probe(copy_package(tmp_path))
    assert all(name.endswith(_native._SUFFIXES) for name in files), files
    assert "older than the sources" not in stderr


def test_a_newer_source_anywhere_in_the_package_means_plain_python_and_one_warning(
    tmp_path: Path,
) -> None:
    src = copy_package(tmp_path)
    later = time.time() + 5
    # Not a compiled module itself: its constants may be baked into one.
    os.utime(src / "roundhouse" / "errors.py", (later, later))
    files, stderr = probe(src)
    assert [Path(name).name for name in files] == ["service.py", "stdio.py"]
    assert stderr.count("older than the sources") == 1


def test_a_compiled_module_no_longer_listed_is_not_loaded_when_stale(tmp_path: Path) -> None:
    """A leftover of an earlier build: after an edit it must not load either."""
    src = copy_package(tmp_path)
    # Pretend an earlier build compiled errors.py as well: a file Python would import first.
    twin = next(iter(_native.twins("roundhouse.gateway.service")))
    leftover = src / "roundhouse" / ("errors" + twin.name[len("service") :])
    shutil.copy2(twin, leftover)
    later = time.time() + 5
    os.utime(src / "roundhouse" / "errors.py", (later, later))
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", "import roundhouse.errors as e; print(e.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("errors.py")
