"""The data plane's hot modules, compiled to C with mypyc, and the guard against stale builds.

Every MCP call runs through a few thousand lines of our Python (the HTTP front door, the
gateway's dispatch, the session table, the relay's bookkeeping, the stdio connection). Compiled
by mypyc from the same, strictly typed source they cost ~10 % fewer instructions per call
(``bench/callcost.py``; docs/PERFORMANCE.md). The source stays the truth: a module without its
compiled twin runs as plain Python, with the same behaviour and the same tests.

``python src/roundhouse/_native.py build`` (run by ``make install``; this file needs only the
standard library) compiles :data:`MODULES` in place: beside ``gateway/service.py`` lies
``gateway/service.cpython-311-…so``, which Python imports in preference to the source.
``clean`` removes them.

A compiled twin older than the sources would run code that is no longer in the files. So
``roundhouse/__init__`` calls :func:`guard` first: when any source of the package is newer than
a twin (an edit, a checkout), none of them is used (they share one library, and a compiled
module calls its compiled neighbours directly): a finder placed first on ``sys.meta_path``
loads those modules from source, and one warning on stderr says to run ``make install``. The
check is a ``stat`` per source file, ~0.3 ms.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["MODULES", "build", "clean", "guard", "twins"]

#: Modules on the path of every MCP call; each is mypy --strict clean and imports nothing that
#: mypyc cannot follow. (Protocol classes checked at run time, such as
#: ``upstream.base.Connection``, stay interpreted: mypyc compiles them as plain classes.)
MODULES: Final = (
    "roundhouse.gateway.frontends.http",
    "roundhouse.gateway.frontends.wire",
    "roundhouse.gateway.frontends.exchange",
    "roundhouse.gateway.service",
    "roundhouse.gateway.sessions",
    "roundhouse.gateway.relay",
    "roundhouse.upstream.stdio",
)

PACKAGE_ROOT: Final = Path(__file__).resolve().parent  # src/roundhouse
SOURCE_ROOT: Final = PACKAGE_ROOT.parent  # src
_SUFFIXES: Final = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _source(module: str) -> Path:
    return SOURCE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def twins(module: str) -> list[Path]:
    """The compiled files of ``module`` that Python would import instead of its source."""
    source = _source(module)
    return [
        source.with_name(source.stem + suffix)
        for suffix in _SUFFIXES
        if _exists(source.stem + suffix, source.parent)
    ]


def _exists(name: str, folder: Path) -> bool:
    return os.path.exists(os.path.join(folder, name))


def _walk_sources(folder: str) -> Iterator[os.DirEntry[str]]:
    # os.scandir, not Path.rglob: this runs at every start, and rglob is ~10x slower.
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    yield from _walk_sources(entry.path)
            elif entry.name.endswith(".py"):
                yield entry


def _shared_libraries() -> list[Path]:
    # mypyc puts the group's code in one library at the build root, named <hash>__mypyc.
    return [p for p in SOURCE_ROOT.glob("*__mypyc.*") if p.name.endswith(_SUFFIXES)]


def _stale() -> list[str]:
    """The compiled modules older than a source of the package, any source: mypyc takes the
    values of other modules' ``Final`` constants and the shapes of their classes into the
    code it writes, so an edit anywhere may leave a compiled module wrong."""
    oldest = min((twin.stat().st_mtime, module) for module in MODULES for twin in twins(module))
    newest = max(path.stat().st_mtime for path in PACKAGE_ROOT.rglob("*.py"))
    if newest <= oldest[0]:
        return []
    return [
        module for module in MODULES if any(twin.stat().st_mtime < newest for twin in twins(module))
    ]


class _SourceFirst:
    """Finds the listed modules' sources, whatever compiled file lies beside them."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def guard() -> None:
    """Use no compiled module when any is older than a source (see the module's doc)."""
    if not any(twins(module) for module in MODULES):
        return  # not compiled (a fresh clone, or ``clean``)
    stale = _stale()
    if not stale:
        return
    sys.meta_path.insert(0, _SourceFirst(MODULES))
    sys.stderr.write(
        "roundhouse: the compiled modules are older than the sources; running the data plane "
        "as plain Python. `make install` compiles it again.\n"
    )


def sources() -> list[Path]:
    """Every source a build depends on (for make)."""
    return sorted(Path(entry.path) for entry in _walk_sources(str(PACKAGE_ROOT)))


def clean() -> None:
    """Remove every compiled twin and the shared library."""
    for module in MODULES:
        for twin in twins(module):
            twin.unlink()
    for library in _shared_libraries():
        library.unlink()


def build() -> None:
    """Compile :data:`MODULES` with mypyc and put the results beside their sources."""
    import shutil
    import subprocess
    import tempfile

    mypyc = shutil.which("mypyc", path=os.path.dirname(sys.executable)) or shutil.which("mypyc")
    if mypyc is None:
        raise SystemExit("mypyc not found (it comes with mypy: `make install`)")
    clean()
    sources = [str(_source(module).relative_to(SOURCE_ROOT)) for module in MODULES]
    with tempfile.TemporaryDirectory(prefix="roundhouse-mypyc-") as scratch:
        # mypyc builds in the working directory (build/, *.so); copy the sources to a scratch
        # tree so nothing but the finished libraries lands in src/.
        work = Path(scratch) / "src"
        shutil.copytree(SOURCE_ROOT / "roundhouse", work / "roundhouse")
        shutil.copy2(SOURCE_ROOT.parent / "pyproject.toml", scratch)  # mypy's settings
        env = {**os.environ, "MYPYC_OPT_LEVEL": os.environ.get("MYPYC_OPT_LEVEL", "3")}
        done = subprocess.run(
            [mypyc, *sources],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"mypyc failed (exit {done.returncode})")
        for module in MODULES:
            relative = _source(module).relative_to(SOURCE_ROOT)
            for built in (work / relative).parent.glob(relative.stem + ".*"):
                if built.name.endswith(_SUFFIXES):
                    shutil.copy2(built, SOURCE_ROOT / relative.parent / built.name)
        for library in work.glob("*__mypyc.*"):
            if library.name.endswith(_SUFFIXES):
                shutil.copy2(library, SOURCE_ROOT / library.name)


def main(argv: Sequence[str]) -> None:
    command = argv[0] if argv else ""
    if command == "build":
        build()
    elif command == "clean":
        clean()
    elif command == "sources":
        print("\n".join(str(path.relative_to(SOURCE_ROOT.parent)) for path in sources()))
    else:
        raise SystemExit("usage: python src/roundhouse/_native.py build|clean|sources")


if __name__ == "__main__":
    main(sys.argv[1:])
