"""Keeping the catalog: listing what each server offers, and learning when that changes.

When an instance becomes ready its tools, prompts, resources and templates are listed (every
page) and handed to the catalog; when a server has no ready instance left its names are
withdrawn. A modern upstream only tells of list changes on a ``subscriptions/listen`` stream,
so one is kept open to each. The ``x-mcp-header`` annotations of each tool are kept here too,
for the 2026-07-28 ``Mcp-Param-*`` header checks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from roundhouse.errors import UpstreamError
from roundhouse.gateway.sessions import Scope
from roundhouse.gateway.upstreams import Instance, NoInstance
from roundhouse.protocol.param_headers import HeaderMap, header_map
from roundhouse.protocol.param_headers import validate as validate_param_headers

if TYPE_CHECKING:
    from roundhouse.gateway.service import Gateway

__all__ = ["Lister"]

log = logging.getLogger(__name__)

#: Upstream list pages read before a server's list is taken as complete.
MAX_UPSTREAM_PAGES = 100
#: Seconds a list request to an upstream may take when the catalog is refreshed.
LIST_TIMEOUT = 30.0
#: How long one listen stream to a modern upstream stays open before it is opened anew.
UPSTREAM_LISTEN_SECONDS = 24 * 3600.0
_LISTEN_KINDS = ("toolsListChanged", "promptsListChanged", "resourcesListChanged")
_LISTS = (
    ("tools", "tools/list", "tools"),
    ("prompts", "prompts/list", "prompts"),
    ("resources", "resources/list", "resources"),
    ("resources", "resources/templates/list", "resourceTemplates"),
)


class Lister:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self._listening: set[str] = set()
        #: server -> tool -> its x-mcp-header annotations (2026-07-28 Mcp-Param-* headers)
        self.param_maps: dict[str, dict[str, HeaderMap]] = {}

    def refresh(self, slug: str) -> None:
        self._gateway.spawn(self._refresh(slug), f"catalog refresh {slug}")

    async def _refresh(self, slug: str) -> None:
        lock = self._refresh_locks.setdefault(slug, asyncio.Lock())
        async with lock:
            ready = self._gateway.instances.ready(slug)
            if not ready:
                self.withdraw(slug)
                return
            instance = ready[0]
            lists: dict[str, list[dict[str, Any]]] = {}
            for kind, method, key in _LISTS:
                if not _offers(instance, kind):
                    lists.setdefault(key, [])
                    continue
                try:
                    lists[key] = await self._list_all(instance, method, key)
                except (UpstreamError, TimeoutError) as exc:
                    log.warning("%s: %s failed: %s", slug, method, exc)
                    lists[key] = []
            self.param_maps[slug] = {
                tool["name"]: found
                for tool in lists["tools"]
                if isinstance(tool.get("name"), str)
                and (found := header_map(tool.get("inputSchema")))
            }
            before = self._gateway.catalog.version
            self._gateway.catalog.set_server(
                slug,
                priority=instance.priority,
                tools_spec=instance.tools_spec,
                tools=lists["tools"],
                prompts=lists["prompts"],
                resources=lists["resources"],
                templates=lists["resourceTemplates"],
            )
            if self._gateway.catalog.version != before:
                self._gateway.relay.announce_lists_changed(slug)
            for candidate in ready:
                self._listen_upstream(candidate)

    def _listen_upstream(self, instance: Instance) -> None:
        """A modern upstream tells of list changes only on a ``subscriptions/listen`` stream:
        keep one open per instance (its notifications reach the relay like any other)."""
        shake = instance.handshake
        if shake is None or shake.era != "modern" or instance.id in self._listening:
            return
        self._listening.add(instance.id)

        async def listen() -> None:
            try:
                await self.upstream_request(
                    instance,
                    "subscriptions/listen",
                    {"notifications": dict.fromkeys(_LISTEN_KINDS, True)},
                    timeout=UPSTREAM_LISTEN_SECONDS,
                )
            except (UpstreamError, TimeoutError) as exc:
                log.debug("%s: listen stream ended: %s", instance.id, exc)
            finally:
                self._listening.discard(instance.id)

        self._gateway.spawn(listen(), f"listen {instance.id}")

    def _param_map(self, scope: Scope, name: Any) -> tuple[str, str, HeaderMap] | None:
        if not isinstance(name, str):
            return None
        if scope.slug is not None:
            slug, tool = scope.slug, name
        else:
            found = self._gateway.catalog.resolve_tool(name)
            if found is None:
                return None
            slug, tool = found
        mapping = self.param_maps.get(slug, {}).get(tool)
        return (slug, tool, mapping) if mapping else None

    def check_param_headers(
        self, scope: Scope, params: dict[str, Any], headers: list[tuple[bytes, bytes]]
    ) -> str | None:
        """A 2026-07-28 ``tools/call``: do its ``Mcp-Param-*`` headers agree with its
        arguments? None when they do (or the tool declares none), else what is wrong."""
        found = self._param_map(scope, params.get("name"))
        if found is None:
            return None
        arguments = params.get("arguments")
        return validate_param_headers(
            found[2], arguments if isinstance(arguments, dict) else {}, headers
        )

    def withdraw(self, slug: str) -> None:
        before = self._gateway.catalog.version
        self._gateway.catalog.remove_server(slug)
        if self._gateway.catalog.version != before:
            self._gateway.relay.announce_lists_changed(slug)

    async def _list_all(self, instance: Instance, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_UPSTREAM_PAGES):
            params: dict[str, Any] | None = {"cursor": cursor} if cursor else None
            result = await self.upstream_request(instance, method, params, timeout=LIST_TIMEOUT)
            got = result.get(key)
            if isinstance(got, list):
                items.extend(item for item in got if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    async def upstream_request(
        self, instance: Instance, method: str, params: dict[str, Any] | None, *, timeout: float
    ) -> dict[str, Any]:
        connection, shake = instance.connection, instance.handshake
        if connection is None or shake is None:
            raise NoInstance(f"instance {instance.id} is not ready")
        return await connection.request(method, shake.stamp(params), timeout=timeout)


def _offers(instance: Instance, kind: str) -> bool:
    shake = instance.handshake
    return shake is not None and kind in shake.capabilities
