"""Meet an upstream in whichever era it speaks, and check on it later.

``handshake`` follows the SDK's ``mode="auto"`` policy (``mcp/client/_probe.py``): probe
``server/discover`` at the newest modern version; a mutual modern version in the answer settles
the modern era; any error answer except a modern-only -32022, a timeout, or a discover result
without a modern version falls back to ``initialize`` + ``notifications/initialized``. A -32022
to ``initialize`` is itself modern evidence and earns one re-probe.

A probe that times out falls back too (a legacy server may ignore methods it does not know), so a
server that never answers costs two waits of ``timeout`` and fails with UpstreamTimeout naming
``initialize``.
"""

from __future__ import annotations

import time
from typing import Any

from roundhouse.errors import UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.eras import (
    DEFAULT_CLIENT_INFO,
    DISCOVER_METHOD,
    INITIALIZE_METHOD,
    INITIALIZED_NOTIFICATION,
    LATEST_MODERN_VERSION,
    Handshake,
    after_discover_error,
    discover_params,
    initialize_params,
    modern_version_of,
    retry_version_after_initialize_error,
)
from roundhouse.upstream.base import Connection, UpstreamRpcError

__all__ = ["handshake", "ping"]


async def handshake(
    conn: Connection,
    *,
    timeout: float,
    client_info: dict[str, Any] = DEFAULT_CLIENT_INFO,
    capabilities: dict[str, Any] | None = None,
    prefer: str = "auto",
) -> Handshake:
    """Negotiate the era with the server behind ``conn``; each wait is bounded by ``timeout``.

    ``prefer``: ``"auto"`` probes ``server/discover`` and falls back to ``initialize`` (the
    SDK's rule); ``"legacy"`` tries ``initialize`` first and probes only if it is refused;
    ``"modern"`` accepts nothing but ``server/discover``.

    Raises UpstreamTimeout (naming the method that went unanswered), UpstreamProtocolError (an
    answer that is not a usable handshake, or no version in common), UpstreamRpcError (the server
    refused ``initialize``), UpstreamClosed.
    """
    client_capabilities = capabilities or {}
    if prefer == "legacy":
        try:
            return await _initialize(conn, timeout, client_info, client_capabilities)
        except UpstreamRpcError:
            pass  # a modern-only server: probe it
    version = LATEST_MODERN_VERSION
    for attempt in range(2):
        try:
            result = await conn.request(
                DISCOVER_METHOD,
                discover_params(version, client_info=client_info, capabilities=client_capabilities),
                timeout=timeout,
            )
        except UpstreamRpcError as exc:
            retry = after_discover_error(exc.code, exc.data, first_attempt=attempt == 0)
            if retry is not None:
                version = retry
                continue
        except UpstreamTimeout:
            pass  # a legacy server may drop methods it does not know: try initialize
        else:
            modern = modern_version_of(result)
            if modern is not None:
                return Handshake.from_discover_result(
                    result, modern, client_info=client_info, client_capabilities=client_capabilities
                )
        if prefer != "auto":
            raise UpstreamProtocolError(f"the server does not speak the {prefer} era")
        try:
            return await _initialize(conn, timeout, client_info, client_capabilities)
        except UpstreamRpcError as exc:
            retry = retry_version_after_initialize_error(exc.code, exc.data)
            if retry is None or attempt != 0:
                raise
            version = retry
    raise UpstreamProtocolError("the server answered neither server/discover nor initialize")


async def _initialize(
    conn: Connection,
    timeout: float,
    client_info: dict[str, Any],
    capabilities: dict[str, Any],
) -> Handshake:
    result = await conn.request(
        INITIALIZE_METHOD,
        initialize_params(client_info=client_info, capabilities=capabilities),
        timeout=timeout,
    )
    shaken = Handshake.from_initialize_result(
        result, client_info=client_info, client_capabilities=capabilities
    )
    await conn.notify(INITIALIZED_NOTIFICATION)
    return shaken


async def ping(conn: Connection, handshake: Handshake, *, timeout: float) -> float:
    """One health probe; returns how long the answer took, in seconds.

    Legacy servers get ``ping``; the modern era removed it, so they get ``server/discover``.
    """
    started = time.perf_counter()
    if handshake.era == "legacy":
        await conn.request("ping", None, timeout=timeout)
    else:
        await conn.request(
            DISCOVER_METHOD,
            discover_params(
                handshake.protocol_version,
                client_info=handshake.client_info,
                capabilities=handshake.client_capabilities,
            ),
            timeout=timeout,
        )
    return time.perf_counter() - started
