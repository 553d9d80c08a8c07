"""The two protocol eras: versions, ``_meta`` keys, handshake messages and the era-probe rule.

    legacy  2024-11-05 ... 2025-11-25   ``initialize`` + ``notifications/initialized``
    modern  2026-07-28                   no handshake; every request carries ``params._meta``
                                         (version, client info, capabilities); ``server/discover``

A client speaking both probes ``server/discover`` at the newest modern version and falls back to
``initialize`` on anything that is not positive evidence of a modern server. This module holds the
pure half of that rule (``after_discover_error``, ``modern_version_of``), mirroring the SDK's
``mcp/client/_probe.py``; ``upstream/handshake.py`` drives it over a connection. No I/O here.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from roundhouse.errors import UpstreamProtocolError
from roundhouse.protocol.jsonrpc import UNSUPPORTED_PROTOCOL_VERSION, Message, RequestId

__all__ = [
    "CLIENT_CAPABILITIES_META_KEY",
    "CLIENT_INFO_META_KEY",
    "DEFAULT_CLIENT_INFO",
    "DISCOVER_METHOD",
    "HANDSHAKE_VERSIONS",
    "INITIALIZED_NOTIFICATION",
    "INITIALIZE_METHOD",
    "LATEST_HANDSHAKE_VERSION",
    "LATEST_MODERN_VERSION",
    "LOG_LEVEL_META_KEY",
    "MCP_METHOD_HEADER",
    "MCP_NAME_HEADER",
    "MCP_PROTOCOL_VERSION_HEADER",
    "MCP_SESSION_ID_HEADER",
    "MODERN_VERSIONS",
    "NAME_BEARING_METHODS",
    "PROTOCOL_VERSION_META_KEY",
    "SERVER_INFO_META_KEY",
    "V2024_11_05",
    "V2025_03_26",
    "V2025_06_18",
    "V2025_11_25",
    "V2026_07_28",
    "Era",
    "Handshake",
    "after_discover_error",
    "discover_params",
    "discover_request",
    "encode_header_value",
    "era_of_version",
    "initialize_params",
    "initialize_request",
    "modern_meta",
    "modern_version_of",
    "retry_version_after_initialize_error",
]

Era: TypeAlias = Literal["legacy", "modern"]

V2024_11_05: Final = "2024-11-05"
V2025_03_26: Final = "2025-03-26"
V2025_06_18: Final = "2025-06-18"
V2025_11_25: Final = "2025-11-25"
V2026_07_28: Final = "2026-07-28"

# Oldest to newest, as in mcp_types.version.
HANDSHAKE_VERSIONS: Final = (V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25)
MODERN_VERSIONS: Final = (V2026_07_28,)
LATEST_HANDSHAKE_VERSION: Final = HANDSHAKE_VERSIONS[-1]
LATEST_MODERN_VERSION: Final = MODERN_VERSIONS[-1]

PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_META_KEY: Final = "io.modelcontextprotocol/clientInfo"
SERVER_INFO_META_KEY: Final = "io.modelcontextprotocol/serverInfo"
LOG_LEVEL_META_KEY: Final = "io.modelcontextprotocol/logLevel"

# HTTP header names, lowercase as the SDK spells them (HTTP headers are case-insensitive).
MCP_SESSION_ID_HEADER: Final = "mcp-session-id"
MCP_PROTOCOL_VERSION_HEADER: Final = "mcp-protocol-version"
MCP_METHOD_HEADER: Final = "mcp-method"
MCP_NAME_HEADER: Final = "mcp-name"
# Method -> the params key mirrored in ``Mcp-Name`` (mcp.shared.inbound.NAME_BEARING_METHODS).
NAME_BEARING_METHODS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

DISCOVER_METHOD: Final = "server/discover"
INITIALIZE_METHOD: Final = "initialize"
INITIALIZED_NOTIFICATION: Final = "notifications/initialized"

DEFAULT_CLIENT_INFO: Final[dict[str, Any]] = {"name": "roundhouse", "version": "0.1.0"}


def era_of_version(version: str) -> Era | None:
    if version in MODERN_VERSIONS:
        return "modern"
    if version in HANDSHAKE_VERSIONS:
        return "legacy"
    return None


def modern_meta(
    version: str, client_info: dict[str, Any], capabilities: dict[str, Any]
) -> dict[str, Any]:
    """The three reserved ``_meta`` entries every 2026-07-28 request carries."""
    return {
        PROTOCOL_VERSION_META_KEY: version,
        CLIENT_INFO_META_KEY: client_info,
        CLIENT_CAPABILITIES_META_KEY: capabilities,
    }


def discover_params(
    version: str = LATEST_MODERN_VERSION,
    *,
    client_info: dict[str, Any] = DEFAULT_CLIENT_INFO,
    capabilities: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"_meta": modern_meta(version, client_info, capabilities or {})}


def discover_request(
    request_id: RequestId,
    version: str = LATEST_MODERN_VERSION,
    *,
    client_info: dict[str, Any] = DEFAULT_CLIENT_INFO,
    capabilities: dict[str, Any] | None = None,
) -> Message:
    params = discover_params(version, client_info=client_info, capabilities=capabilities)
    return {"jsonrpc": "2.0", "id": request_id, "method": DISCOVER_METHOD, "params": params}


def initialize_params(
    version: str = LATEST_HANDSHAKE_VERSION,
    *,
    client_info: dict[str, Any] = DEFAULT_CLIENT_INFO,
    capabilities: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "protocolVersion": version,
        "capabilities": capabilities or {},
        "clientInfo": client_info,
    }


def initialize_request(
    request_id: RequestId,
    version: str = LATEST_HANDSHAKE_VERSION,
    *,
    client_info: dict[str, Any] = DEFAULT_CLIENT_INFO,
    capabilities: dict[str, Any] | None = None,
) -> Message:
    params = initialize_params(version, client_info=client_info, capabilities=capabilities)
    return {"jsonrpc": "2.0", "id": request_id, "method": INITIALIZE_METHOD, "params": params}


def after_discover_error(code: int, data: Any, *, first_attempt: bool) -> str | None:
    """What a ``server/discover`` error answer means (the SDK's denylist rule).

    Returns a modern version to probe again with (the server named a mutual one in a -32022),
    or None: fall back to ``initialize``. Raises UpstreamProtocolError only for a modern-only
    server whose -32022 lists no version we speak in either era.
    """
    if code != UNSUPPORTED_PROTOCOL_VERSION:
        return None
    supported = _supported_versions(data)
    mutual = [v for v in MODERN_VERSIONS if v in (supported or ())]
    if mutual and first_attempt:
        return mutual[-1]
    if supported is not None and not any(v in HANDSHAKE_VERSIONS for v in supported):
        raise UpstreamProtocolError(
            f"server supports only protocol versions {supported}, none of which Roundhouse speaks",
            data={"supported": supported},
        )
    return None


def retry_version_after_initialize_error(code: int, data: Any) -> str | None:
    """A -32022 to ``initialize`` is modern evidence: the version to re-probe with, if any."""
    if code != UNSUPPORTED_PROTOCOL_VERSION:
        return None
    mutual = [v for v in MODERN_VERSIONS if v in (_supported_versions(data) or ())]
    return mutual[-1] if mutual else None


def modern_version_of(result: dict[str, Any]) -> str | None:
    """The newest mutual modern version a discover result offers, or None (treat as legacy).

    A result that lacks ``supportedVersions`` or lists only handshake-era versions is a legacy
    advertisement, not an incompatibility (SDK ``_probe.py``).
    """
    supported = result.get("supportedVersions")
    if not isinstance(supported, list) or not isinstance(result.get("capabilities"), dict):
        return None
    mutual = [v for v in MODERN_VERSIONS if v in supported]
    return mutual[-1] if mutual else None


def _supported_versions(data: Any) -> list[str] | None:
    if isinstance(data, dict):
        supported = data.get("supported")
        if isinstance(supported, list) and all(isinstance(v, str) for v in supported):
            return supported
    return None


@dataclass(frozen=True, slots=True)
class Handshake:
    """What one upstream told us about itself, and how to address it from now on."""

    era: Era
    protocol_version: str
    server_info: dict[str, Any]
    capabilities: dict[str, Any]
    instructions: str | None = None
    # What we declared; modern requests repeat it in every ``_meta``.
    client_info: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CLIENT_INFO))
    client_capabilities: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_initialize_result(
        cls,
        result: dict[str, Any],
        *,
        client_info: dict[str, Any],
        client_capabilities: dict[str, Any],
    ) -> Handshake:
        version = result.get("protocolVersion")
        if version not in HANDSHAKE_VERSIONS:
            raise UpstreamProtocolError(
                f"initialize answered with unsupported protocol version {version!r}",
                data={"protocolVersion": version},
            )
        server_info = result.get("serverInfo")
        capabilities = result.get("capabilities")
        if not isinstance(server_info, dict) or not isinstance(capabilities, dict):
            raise UpstreamProtocolError("initialize result lacks serverInfo or capabilities")
        instructions = result.get("instructions")
        return cls(
            era="legacy",
            protocol_version=version,
            server_info=server_info,
            capabilities=capabilities,
            instructions=instructions if isinstance(instructions, str) else None,
            client_info=client_info,
            client_capabilities=client_capabilities,
        )

    @classmethod
    def from_discover_result(
        cls,
        result: dict[str, Any],
        version: str,
        *,
        client_info: dict[str, Any],
        client_capabilities: dict[str, Any],
    ) -> Handshake:
        """``version`` is ``modern_version_of(result)``; serverInfo is the ``_meta`` stamp."""
        meta = result.get("_meta")
        server_info = meta.get(SERVER_INFO_META_KEY) if isinstance(meta, dict) else None
        instructions = result.get("instructions")
        return cls(
            era="modern",
            protocol_version=version,
            server_info=server_info if isinstance(server_info, dict) else {},
            capabilities=result["capabilities"],
            instructions=instructions if isinstance(instructions, str) else None,
            client_info=client_info,
            client_capabilities=client_capabilities,
        )

    def stamp(self, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Params ready to send: modern requests get the ``_meta`` envelope, legacy ones pass as is.

        Returns a new dict for modern requests; the caller's ``_meta`` entries are kept.
        """
        if self.era == "legacy":
            return params
        stamped = dict(params) if params else {}
        meta = dict(stamped.get("_meta") or {})
        meta.update(modern_meta(self.protocol_version, self.client_info, self.client_capabilities))
        stamped["_meta"] = meta
        return stamped


_HEADER_SAFE = re.compile(r"[\x20-\x7E]*")
_B64_SENTINEL = re.compile(r"=\?base64\?.*\?=")


def encode_header_value(value: str) -> str:
    """A header-safe ``Mcp-Name``: printable ASCII passes, anything else is ``=?base64?...?=``."""
    if (
        _HEADER_SAFE.fullmatch(value)
        and value == value.strip()
        and not _B64_SENTINEL.fullmatch(value)
    ):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="
