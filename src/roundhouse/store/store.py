"""The registry's API: server specs (desired state) and instances (last known actual state).

:class:`Store` is the contract and the one way in: ``await Store.open(url)`` or ``async with
Store.connect(url)`` picks the implementation by the URL's scheme.

- ``sqlite:///PATH`` (the default, a file in the data directory):
  :class:`~roundhouse.store.sqlite.SQLiteStore`, on the standard library's ``sqlite3``.
- ``postgresql://...`` (several gateway replicas sharing one registry):
  :class:`~roundhouse.store.sqlalchemy.SQLAlchemyStore`, SQLAlchemy Core on asyncpg.

A gateway on SQLite never imports SQLAlchemy (~19 MiB and ~45 % of its start-up imports), except
to migrate a registry written by an older Roundhouse. Both implementations keep the same
promises: every method is one short transaction, so a method that returned has committed (on
SQLite, ``synchronous=FULL`` in WAL mode: that commit survives a crash and a power loss); unique
and foreign-key violations are ``Conflict`` and ``NotFound``; the driver's errors become
:class:`~roundhouse.errors.StoreError` (mapped here, in :meth:`Store._mapped_errors`) with a
message that names the database but never its credentials, nor any statement parameter, because
a spec carries secrets.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import ClassVar, Self

from roundhouse.errors import RoundhouseError, StoreError
from roundhouse.spec import ServerSpec
from roundhouse.store import urls
from roundhouse.store.records import InstanceRecord, ServerRecord

__all__ = ["HEAD_REVISION", "MigrationError", "Store"]

#: The newest migration's revision. Both stores stamp a new registry with it, and open one
#: already there without alembic (~10 MiB and ~0.3 s); ``tests/unit/test_store.py`` checks that it
#: matches the migration scripts' head.
HEAD_REVISION = "0001"


class MigrationError(Exception):
    """The registry's schema cannot be brought to this version (e.g. it is newer).

    ``orig`` is the driver's own error when there is one: its words make the message.
    """

    def __init__(self, message: str, *, orig: BaseException | None = None) -> None:
        super().__init__(message)
        self.orig = orig


class Store(abc.ABC):
    """The registry. Open it with ``await Store.open(url)`` or ``async with Store.connect(url)``.

    ``url`` is ``sqlite:///PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DB``. ``schema``
    puts the Postgres tables in that schema (its ``search_path``), which must exist.
    """

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: ClassVar[str]
    #: The driver's errors that become ``StoreError``.
    _foreign_errors: ClassVar[tuple[type[BaseException], ...]]
    #: The database named for messages and logs, without user or password.
    location: str
    #: Taken out of any message that might quote it.
    _password: str | None = None

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> Store:
        """Open the registry, creating it (a SQLite file 0600) if needed, and migrate it."""
        impl: type[Store] = cls
        if cls is Store:
            impl = _implementation(urls.parse(url))
        return await impl._open(url, schema=schema)

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, schema: str | None = None) -> AsyncIterator[Store]:
        store = await cls.open(url, schema=schema)
        try:
            yield store
        finally:
            await store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    @abc.abstractmethod
    async def _open(cls, url: str, *, schema: str | None) -> Self: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- servers ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        """Register a new server; ``Conflict`` if the slug is taken.

        The primary key decides, not a prior read, so two replicas racing for one slug cannot
        both win. ``desired_instances`` defaults to ``spec.instances.min``.
        """

    @abc.abstractmethod
    async def upsert_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        """Insert the server or replace its spec, in one statement (safe under races).

        An existing server keeps its ``desired_instances`` (clamped into the new min..max)
        unless one is given; its generation goes up by one.
        """

    @abc.abstractmethod
    async def replace_server(self, spec: ServerSpec) -> ServerRecord:
        """Replace the spec of an existing server; ``NotFound`` if there is none.

        ``desired_instances`` is kept, clamped into the new ``spec.instances`` range.
        """

    @abc.abstractmethod
    async def get_server(self, slug: str) -> ServerRecord: ...

    @abc.abstractmethod
    async def list_servers(self) -> list[ServerRecord]:
        """Every server, ordered by slug."""

    @abc.abstractmethod
    async def delete_server(self, slug: str) -> None:
        """Remove the server and (by cascade) its instances; ``NotFound`` if there is none."""

    @abc.abstractmethod
    async def set_desired_instances(self, slug: str, n: int) -> ServerRecord:
        """Scale: ``InvalidInput`` unless ``n`` is within ``spec.instances.min..max``."""

    @abc.abstractmethod
    async def set_enabled(self, slug: str, enabled: bool) -> ServerRecord:
        """Rewrite ``spec.enabled``; the reconciler starts or stops the instances."""

    # -- instances -------------------------------------------------------------------------

    @abc.abstractmethod
    async def save_instance(self, rec: InstanceRecord) -> None:
        """Insert or update the instance by id; sets ``rec.updated_at`` to now.

        ``NotFound`` if its server does not exist (any more: deleting a server deletes its
        instances, and a late save from the supervisor must not bring them back).
        """

    @abc.abstractmethod
    async def get_instance(self, id: str) -> InstanceRecord: ...

    @abc.abstractmethod
    async def list_instances(self, server: str | None = None) -> list[InstanceRecord]:
        """Instances of one server or of all, ordered by server and ordinal."""

    @abc.abstractmethod
    async def delete_instance(self, id: str) -> None:
        """Forget an instance. Idempotent: a cascade from its server may have come first."""

    # -- health ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def integrity_check(self) -> str:
        """``"ok"`` when the database is sound (SQLite's ``PRAGMA integrity_check``).

        Postgres checks itself; there a trivial query proves the registry is reachable.
        """

    # -- errors ----------------------------------------------------------------------------

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        # MigrationError: e.g. a registry migrated by a newer Roundhouse than this one.
        foreign: tuple[type[BaseException], ...] = (*self._foreign_errors, OSError, MigrationError)
        try:
            yield
        except RoundhouseError:
            raise
        except foreign as exc:
            raise StoreError(f"registry {self.location} failed: {self._explain(exc)}") from exc

    def _explain(self, exc: BaseException) -> str:
        """The driver's own words (first line), without the password should it appear."""
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        detail = f"{type(orig).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        if self._password:
            detail = detail.replace(self._password, "***")
        return detail


def _implementation(url: urls.RegistryURL) -> type[Store]:
    # Imported here: each implementation loads its own driver, and SQLite never SQLAlchemy.
    if url.backend == "sqlite":
        from roundhouse.store.sqlite import SQLiteStore

        return SQLiteStore
    from roundhouse.store.sqlalchemy import SQLAlchemyStore

    return SQLAlchemyStore
