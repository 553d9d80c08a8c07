"""Origin and Host checks: a web page on another site must not steer the gateway.

The management API can spawn commands, so a browser tricked into calling it is a remote code
execution path. Two checks close it (MCP's "Security Best Practices"): a request whose
``Origin`` is present and not allowed gets 403, and when the gateway is bound to loopback a
request whose ``Host`` is not a loopback name gets 403 too (DNS rebinding).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["LOOPBACK_HOSTS", "OriginPolicy"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_only(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class OriginPolicy:
    def __init__(self, *, bind_host: str, port: int, allowed_origins: list[str]) -> None:
        self.loopback_only = bind_host in LOOPBACK_HOSTS
        self.port = port
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    def host_allowed(self, host: str | None) -> bool:
        if not self.loopback_only or host is None:
            return True
        return _host_only(host.lower()) in LOOPBACK_HOSTS

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed or "*" in self.allowed:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        # The gateway's own pages (the dashboard) come from a loopback origin on its own port.
        loopback = parts.hostname in LOOPBACK_HOSTS or f"[{parts.hostname}]" in LOOPBACK_HOSTS
        default_port = 443 if parts.scheme == "https" else 80
        return loopback and (self.port == 0 or (parts.port or default_port) == self.port)
