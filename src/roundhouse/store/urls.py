"""Registry URLs, read without SQLAlchemy: which backend, and for SQLite which file.

The grammar is SQLAlchemy's (``make_url``), so a URL names the same database whichever store
reads it. This module decides the backend and reads a SQLite URL whole; a Postgres URL is read in
full by SQLAlchemy (``engine.normalize_url``), which its store loads anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from roundhouse.errors import InvalidInput

__all__ = ["RegistryURL", "parse"]

#: SQLAlchemy's URL pattern (``sqlalchemy.engine.url._parse_url``).
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)

#: Drivers accepted per backend; the stores choose their own (sqlite3 and asyncpg).
_DRIVERS = {"sqlite": ("", "aiosqlite"), "postgresql": ("", "asyncpg"), "postgres": ("", "asyncpg")}


@dataclass(frozen=True, slots=True)
class RegistryURL:
    backend: Literal["sqlite", "postgresql"]
    #: The SQLite file (``":memory:"`` for none); ``None`` for Postgres.
    database: str | None = None

    @property
    def location(self) -> str:
        """The SQLite database named for messages (it has no credentials)."""
        return f"sqlite:///{self.database}"


def parse(url: str) -> RegistryURL:
    """The backend of ``url``; ``InvalidInput`` unless it is SQLite or Postgres."""
    match = _URL.match(url)
    if match is None:
        raise InvalidInput("the database URL cannot be parsed", field="database_url")
    name = match["name"]
    backend, _, driver = name.partition("+")
    if driver not in _DRIVERS.get(backend, ()):
        raise InvalidInput(
            f"unsupported database URL scheme {name!r}: "
            "use sqlite:///PATH or postgresql://USER@HOST/DB",
            field="database_url",
        )
    if backend != "sqlite":
        return RegistryURL("postgresql")
    parts = ("username", "password", "ipv4host", "ipv6host", "port", "query")
    if any(match[part] is not None for part in parts):
        raise InvalidInput(
            "a SQLite registry URL is sqlite:///PATH, without host, user or options",
            field="database_url",
        )
    return RegistryURL("sqlite", unquote(match["database"] or "") or ":memory:")
