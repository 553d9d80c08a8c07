"""A fresh data dir gets Bindery once; a removal sticks; an existing registry is left alone."""

from __future__ import annotations

import sys
from pathlib import Path

from roundhouse.defaults import BINDERY_SLUG, MARKER_NAME, apply_defaults, bindery_spec
from roundhouse.settings import Settings
from roundhouse.spec import ServerSpec
from roundhouse.store import Store


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", **overrides)  # type: ignore[arg-type]


async def _open(settings: Settings) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await Store.open(settings.registry_url)


async def test_a_fresh_data_dir_gets_bindery_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path, bindery=True)
    store = await _open(settings)
    try:
        assert await apply_defaults(store, settings) == [BINDERY_SLUG]
        (record,) = await store.list_servers()
        assert record.spec.slug == BINDERY_SLUG
        transport = record.spec.transport
        assert transport.type == "stdio"
        assert transport.command == sys.executable
        assert transport.args == ["-m", "roundhouse.bindery.face"]
        assert transport.env["BINDERY_DB"] == str(settings.data_dir / "bindery" / "bindery.db")
        assert (settings.data_dir / MARKER_NAME).exists()
        assert await apply_defaults(store, settings) == []
        assert len(await store.list_servers()) == 1
    finally:
        await store.close()


async def test_a_removed_bindery_stays_removed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, bindery=True)
    store = await _open(settings)
    try:
        await apply_defaults(store, settings)
        await store.delete_server(BINDERY_SLUG)
        assert await apply_defaults(store, settings) == []
        assert await store.list_servers() == []
    finally:
        await store.close()


async def test_a_registry_with_servers_is_not_touched_but_marked(tmp_path: Path) -> None:
    settings = _settings(tmp_path, bindery=True)
    store = await _open(settings)
    try:
        mine = ServerSpec.model_validate(
            {"slug": "mine", "transport": {"type": "stdio", "command": "true"}}
        )
        await store.upsert_server(mine)
        assert await apply_defaults(store, settings) == []
        assert [r.spec.slug for r in await store.list_servers()] == ["mine"]
        assert (settings.data_dir / MARKER_NAME).exists()
    finally:
        await store.close()


async def test_turned_off_it_adds_nothing_and_leaves_no_marker(tmp_path: Path) -> None:
    settings = _settings(tmp_path, bindery=False)
    store = await _open(settings)
    try:
        assert await apply_defaults(store, settings) == []
        assert await store.list_servers() == []
        assert not (settings.data_dir / MARKER_NAME).exists()
    finally:
        await store.close()


def test_the_spec_is_valid_for_any_data_dir(tmp_path: Path) -> None:
    spec = bindery_spec(tmp_path / "a dir with spaces")
    assert spec.timeouts.start == 60.0
    assert spec.tags == ["bundled"]
