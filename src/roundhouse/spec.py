"""Server specs: what to run and how to reach it (the desired state).

Pydantic lives here because this is the config/API edge; the supervisor reads the validated
models and never re-validates. Unknown fields are errors everywhere (``extra="forbid"``), so a
typo in a config file is caught instead of silently ignored.

Secrets (auth key/token, env values, header values) are stored like any other field but leave
through :func:`public_spec` only masked; a masked value sent back on update keeps the stored one,
so a client can round-trip a spec it read without knowing the secrets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from roundhouse.errors import InvalidInput, NotSupported

__all__ = [
    "MASK",
    "SLUG_PATTERN",
    "AuthSpec",
    "HealthSpec",
    "HttpTransport",
    "InstancesSpec",
    "LocalHttpTransport",
    "RestartSpec",
    "ServerSpec",
    "StdioTransport",
    "TimeoutsSpec",
    "ToolsSpec",
    "Transport",
    "check_supported",
    "keep_masked_secrets",
    "public_spec",
    "slug_from_name",
    "spec_to_storage",
]

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
MASK = "********"
DEFAULT_MAX_INSTANCES = 10
MAX_ARGS = 256
MAX_ARG_LENGTH = 8192
MAX_ENV = 256

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _check_no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL bytes")
    return value


_Arg = Annotated[str, Field(max_length=MAX_ARG_LENGTH)]
_HEADER_NAME_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class _CommandMixin(_Model):
    command: Annotated[str, Field(min_length=1, max_length=4096)]
    args: Annotated[
        list[Annotated[str, Field(max_length=MAX_ARG_LENGTH)]], Field(max_length=MAX_ARGS)
    ] = []
    env: Annotated[
        dict[str, Annotated[str, Field(max_length=MAX_ARG_LENGTH)]], Field(max_length=MAX_ENV)
    ] = {}
    cwd: Annotated[str | None, Field(max_length=4096)] = None

    @field_validator("command")
    @classmethod
    def _command_is_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("command must not be empty")
        return _check_no_nul(value, "command")

    @field_validator("args")
    @classmethod
    def _args_have_no_nul(cls, value: list[str]) -> list[str]:
        for arg in value:
            _check_no_nul(arg, "args")
        return value

    @field_validator("env")
    @classmethod
    def _env_names_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
            _check_no_nul(val, "env values")
        return value


class StdioTransport(_CommandMixin):
    type: Literal["stdio"] = "stdio"


class LocalHttpTransport(_CommandMixin):
    """An HTTP MCP server Roundhouse launches itself on a port it allocates.

    ``{port}`` in the command, an argument or an env value is replaced by that port; ``PORT``
    is set in the environment too.
    """

    type: Literal["local-http"] = "local-http"
    #: Polled until it answers 2xx before the MCP handshake; ``None``: wait until the port
    #: accepts connections (for servers with no health route).
    health_path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=1024)] | None = "/health"
    mcp_path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=1024)] = "/mcp"

    @model_validator(mode="after")
    def _has_port_placeholder(self) -> LocalHttpTransport:
        places = [self.command, *self.args, *self.env.values()]
        if not any("{port}" in place for place in places):
            raise ValueError(
                "a local-http command needs a {port} placeholder in its command, args or env"
            )
        return self


class HttpTransport(_Model):
    """A remote MCP server at ``url``, reached with its own credentials; ``type`` picks the wire.

    ``http``: Streamable HTTP; a server that refuses the first POST with 400, 404 or 405 is
    tried as a legacy HTTP+SSE server at the same URL (the MCP specification's backwards
    compatibility rule), so an old server works without saying so. ``sse``: the legacy
    HTTP+SSE transport (2024-11-05) only; ``url`` is the event stream's (often ``.../sse``).
    """

    type: Literal["http", "sse"] = "http"
    url: Annotated[str, Field(max_length=4096, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
    headers: Annotated[dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=64)] = {}

    @field_validator("headers")
    @classmethod
    def _header_names_are_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not re.match(_HEADER_NAME_RE, name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if "\r" in val or "\n" in val or "\x00" in val:
                raise ValueError(f"header {name!r} has a control character in its value")
        return value


Transport = Annotated[
    StdioTransport | LocalHttpTransport | HttpTransport, Field(discriminator="type")
]


class AuthSpec(_Model):
    """Credentials Roundhouse presents to the upstream (never the client's own token)."""

    type: Literal["none", "api_key", "bearer"] = "none"
    key: SecretStr | None = None
    token: SecretStr | None = None
    header: Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=128)] = (
        "X-API-Key"
    )

    @model_validator(mode="after")
    def _has_its_secret(self) -> AuthSpec:
        if self.type == "api_key" and not self.key:
            raise ValueError("auth type api_key needs a key")
        if self.type == "bearer" and not self.token:
            raise ValueError("auth type bearer needs a token")
        return self


class InstancesSpec(_Model):
    min: Annotated[int, Field(ge=0, le=64)] = 1
    max: Annotated[int, Field(ge=1, le=64)] = DEFAULT_MAX_INSTANCES

    @model_validator(mode="after")
    def _min_not_above_max(self) -> InstancesSpec:
        if self.min > self.max:
            raise ValueError(f"instances.min ({self.min}) is above instances.max ({self.max})")
        return self


class TimeoutsSpec(_Model):
    """Seconds. ``start``: until ready; ``call``: one request; ``stop``: SIGTERM to SIGKILL."""

    start: Annotated[float, Field(gt=0, le=600)] = 30.0
    call: Annotated[float, Field(gt=0, le=3600)] = 60.0
    stop: Annotated[float, Field(gt=0, le=300)] = 10.0


class RestartSpec(_Model):
    policy: Literal["on-failure", "always", "never"] = "on-failure"
    backoff_initial: Annotated[float, Field(gt=0, le=600)] = 1.0
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 300.0
    reset_after: Annotated[float, Field(gt=0, le=86400)] = 600.0
    fast_exit_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    max_fast_exits: Annotated[int, Field(ge=1, le=100)] = 5


class HealthSpec(_Model):
    interval: Annotated[float, Field(gt=0, le=86400)] = 30.0
    timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    failures_before_restart: Annotated[int, Field(ge=1, le=100)] = 3


_ToolName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.*?\[\]-]+$")]


class ToolsSpec(_Model):
    """Which of the server's tools the gateway offers, and under which names.

    ``allow`` and ``deny`` hold names or shell-style patterns (``get_*``); a tool is offered when
    it matches ``allow`` (or ``allow`` is unset) and matches nothing in ``deny``. ``rename`` maps
    the server's name to the one clients see (before namespacing on the aggregate endpoint).
    """

    allow: Annotated[list[_ToolName], Field(max_length=1000)] | None = None
    deny: Annotated[list[_ToolName], Field(max_length=1000)] = []
    rename: Annotated[dict[str, _ToolName], Field(max_length=1000)] = {}


Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SpawnPolicy = Literal["shared", "per-session", "per-principal", "per-call"]


class ServerSpec(_Model):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=40)]
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    transport: Transport
    auth: AuthSpec = AuthSpec()
    priority: Annotated[int, Field(ge=0, le=255)] = 0
    tags: Annotated[list[Tag], Field(max_length=32)] = []
    instances: InstancesSpec = InstancesSpec()
    spawn: SpawnPolicy = "shared"
    timeouts: TimeoutsSpec = TimeoutsSpec()
    restart: RestartSpec = RestartSpec()
    health: HealthSpec = HealthSpec()
    tools: ToolsSpec = ToolsSpec()
    #: Which protocol era the gateway speaks to the server. ``auto``: probe ``server/discover``,
    #: fall back to ``initialize``. ``legacy``/``modern``: that era only (legacy first for
    #: servers whose tools ask the client for sampling or elicitation, which a 2026-07-28
    #: connection cannot carry). ``both``: instances alternate, even ordinals legacy, odd ones
    #: modern, and each client is served by an instance of its own era when one is ready.
    era: Literal["auto", "legacy", "modern", "both"] = "auto"
    enabled: bool = True

    @field_validator("transport", mode="before")
    @classmethod
    def _infer_transport_type(cls, value: Any) -> Any:
        if isinstance(value, dict) and "type" not in value:
            return {**value, "type": "http" if "url" in value else "stdio"}
        return value

    @field_validator("instances", mode="before")
    @classmethod
    def _instances_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"min": value, "max": max(value, DEFAULT_MAX_INSTANCES)}
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.slug


def check_supported(spec: ServerSpec) -> None:
    """Reject the accepted names whose features are not built yet, with a clear message."""
    if spec.spawn != "shared":
        raise NotSupported(
            f"spawn policy {spec.spawn!r} is not yet supported; use 'shared'",
            data={"field": "spawn"},
        )


def public_spec(spec: ServerSpec) -> dict[str, Any]:
    """The spec as the API shows it: secrets masked, nothing else changed."""
    data = spec.model_dump(mode="json")
    auth = data["auth"]
    for secret in ("key", "token"):
        if auth.get(secret) is not None:
            auth[secret] = MASK
    transport = data["transport"]
    for mapping in ("env", "headers"):
        if mapping in transport:
            transport[mapping] = {name: MASK for name in transport[mapping]}
    return data


def spec_to_storage(spec: ServerSpec) -> dict[str, Any]:
    """The spec as stored: secrets in clear (the registry is the vault; it is 0600)."""
    data = spec.model_dump(mode="json")
    for secret in ("key", "token"):
        value = getattr(spec.auth, secret)
        data["auth"][secret] = value.get_secret_value() if value is not None else None
    return data


def keep_masked_secrets(new: dict[str, Any], old: ServerSpec | None) -> dict[str, Any]:
    """Replace masked values in an incoming spec dict with the stored secrets they stand for."""
    if old is None:
        return new
    stored = spec_to_storage(old)
    auth = new.get("auth")
    if isinstance(auth, dict):
        for secret in ("key", "token"):
            if auth.get(secret) == MASK:
                auth[secret] = stored["auth"].get(secret)
    transport = new.get("transport")
    old_transport = stored["transport"]
    if isinstance(transport, dict):
        for mapping in ("env", "headers"):
            values = transport.get(mapping)
            if not isinstance(values, dict):
                continue
            for name, value in values.items():
                if value != MASK:
                    continue
                if name not in old_transport.get(mapping, {}):
                    # A mask with nothing behind it: storing it would store the mask itself.
                    raise InvalidInput(
                        f"transport.{mapping}.{name} is masked but no stored value stands behind"
                        " it; send the value itself",
                        field=f"transport.{mapping}.{name}",
                    )
                values[name] = old_transport[mapping][name]
    return new


def slug_from_name(name: str) -> str:
    """A slug for a free-form server name (``"GitHub Tools"`` → ``"github-tools"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40].rstrip("-") or "server"
