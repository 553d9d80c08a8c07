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

#: Modules on the path of every MCP call. Compiled code checks every annotated type at run
#: time, so a module may be listed only if its annotations hold for whatever arrives: these
#: take untrusted JSON as ``Any`` and check it themselves. Left interpreted: ``catalog.py``
#: (it types an upstream's lists as what they should be and sorts out what they are: compiled,
#: a dict where a list belongs raised TypeError), protocol classes checked at run time
#: (``upstream.base.Connection``: mypyc compiles them as plain classes), ``api.app`` (uvicorn
#: tells an ASGI 3 app by ``asyncio.iscoroutinefunction``, which a compiled function fails),
#: ``control/`` (async generators). Each of the others gained little: the gateway's
#: instructions per call moved by < 1 %.
MODULES: Final = (
    "roundhouse.gateway.frontends.http",
    "roundhouse.gateway.frontends.headers",
    "roundhouse.gateway.frontends.messages",
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


def _walk(folder: str) -> Iterator[os.DirEntry[str]]:
    """Every file of the package: sources and compiled modules (os.scandir, not
    Path.rglob: this runs at every start, and rglob is several times slower)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    yield from _walk(entry.path)
            else:
                yield entry


def _shared_libraries() -> list[Path]:
    # mypyc puts the group's code in one library at the build root, named <hash>__mypyc.
    return [p for p in SOURCE_ROOT.glob("*__mypyc.*") if p.name.endswith(_SUFFIXES)]


def _stale() -> bool:
    """Is a compiled module of the package older than a source of it, any source? mypyc takes
    the values of other modules' ``Final`` constants and the shapes of their classes into the
    code it writes, so an edit anywhere may leave a compiled module wrong. Modules compiled by
    an earlier build and no longer listed count too: they would still load."""
    newest_source = 0.0
    oldest_compiled = float("inf")
    for entry in _walk(str(PACKAGE_ROOT)):
        if entry.name.endswith(".py"):
            newest_source = max(newest_source, entry.stat().st_mtime)
        elif entry.name.endswith(_SUFFIXES):
            oldest_compiled = min(oldest_compiled, entry.stat().st_mtime)
    return oldest_compiled < newest_source


class _SourceFirst:
    """Finds the package's modules in their sources, whatever compiled file lies beside."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("roundhouse."):
            return None
        source = _source(fullname)
        if not source.is_file():
            return None  # a package: its __init__ is never compiled
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, source)


def guard() -> None:
    """Use no compiled module when any is older than a source (see the module's doc)."""
    if not _shared_libraries():
        return  # not compiled (a fresh clone, or ``clean``): one glob
    if not _stale():
        return
    sys.meta_path.insert(0, _SourceFirst())
    sys.stderr.write(
        "roundhouse: the compiled modules are older than the sources; running the data plane "
        "as plain Python. `make install` compiles it again.\n"
    )


def sources() -> list[Path]:
    """Every source a build depends on (for make)."""
    return sorted(Path(e.path) for e in _walk(str(PACKAGE_ROOT)) if e.name.endswith(".py"))


def clean() -> None:
    """Remove every compiled module of the package (also of modules no longer listed: they
    would load, and miss their shared library) and the shared library."""
    for folder, _, names in os.walk(PACKAGE_ROOT):
        for name in names:
            if name.endswith(_SUFFIXES):
                os.unlink(os.path.join(folder, name))
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
