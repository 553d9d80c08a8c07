"""Translating requests and results between the two protocol eras. Pure: no I/O.

The gateway negotiates each side on its own: a legacy client may reach a modern upstream and the
other way round. Requests travel with the client's params minus the client-side envelope; the
upstream's own envelope (for a modern upstream) is added by :func:`upstream_params`. Results are
shaped for the client's era by :func:`client_result`.
"""

from __future__ import annotations

from typing import Any, Final

from roundhouse.protocol.eras import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
    modern_meta,
)

__all__ = [
    "ENVELOPE_KEYS",
    "LIST_METHODS",
    "client_result",
    "upstream_params",
]

#: The reserved ``_meta`` keys of a 2026-07-28 request: they describe one hop, never forwarded.
ENVELOPE_KEYS: Final = frozenset(
    {
        PROTOCOL_VERSION_META_KEY,
        CLIENT_CAPABILITIES_META_KEY,
        CLIENT_INFO_META_KEY,
        LOG_LEVEL_META_KEY,
    }
)
#: Methods whose modern results carry ``ttlMs`` and ``cacheScope``.
LIST_METHODS: Final = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
#: Cache hints the gateway gives a modern client for a result from a legacy upstream, which
#: gave none: not cacheable, and private (the gateway may add per-principal views).
NO_CACHE: Final = {"ttlMs": 0, "cacheScope": "private"}


def upstream_params(
    params: dict[str, Any] | None,
    *,
    upstream_era: str,
    upstream_version: str,
    client_info: dict[str, Any],
    client_capabilities: dict[str, Any],
    progress_token: Any = None,
    log_level: str | None = None,
) -> dict[str, Any] | None:
    """The params to send upstream: the client's, its envelope replaced by the upstream's.

    ``progress_token``, when given, replaces the client's own token (the gateway maps it back).
    Returns the caller's dict unchanged when nothing needs to change: the common fast path of a
    legacy client calling a legacy upstream without progress.
    """
    meta = params.get("_meta") if params else None
    if (
        upstream_era != "modern"
        and progress_token is None
        and (not isinstance(meta, dict) or not ENVELOPE_KEYS.intersection(meta))
    ):
        return params
    new = dict(params) if params else {}
    new_meta = (
        {k: v for k, v in meta.items() if k not in ENVELOPE_KEYS} if isinstance(meta, dict) else {}
    )
    if progress_token is not None:
        new_meta["progressToken"] = progress_token
    if upstream_era == "modern":
        new_meta.update(modern_meta(upstream_version, client_info, client_capabilities))
        if log_level is not None:
            new_meta[LOG_LEVEL_META_KEY] = log_level
    if new_meta:
        new["_meta"] = new_meta
    else:
        new.pop("_meta", None)
    return new


def client_result(
    method: str,
    result: dict[str, Any],
    *,
    client_era: str,
    upstream_era: str,
    server_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A result from an upstream of ``upstream_era`` shaped for a client of ``client_era``."""
    if client_era == "legacy":
        if upstream_era != "modern":
            return result
        shaped = {k: v for k, v in result.items() if k not in ("resultType", "ttlMs", "cacheScope")}
        meta = shaped.get("_meta")
        if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
            rest = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
            if rest:
                shaped["_meta"] = rest
            else:
                del shaped["_meta"]
        return shaped
    shaped = dict(result)
    shaped.setdefault("resultType", "complete")
    if method in LIST_METHODS:
        for key, value in NO_CACHE.items():
            shaped.setdefault(key, value)
    if server_info is not None:
        meta = shaped.get("_meta")
        if not isinstance(meta, dict) or meta.get(SERVER_INFO_META_KEY) is None:
            shaped["_meta"] = {
                **(meta if isinstance(meta, dict) else {}),
                SERVER_INFO_META_KEY: server_info,
            }
    return shaped
