"""Settings: from the environment (``ROUNDHOUSE_*``), a config file, and the command line.

Precedence, highest first: command-line flags, environment, the config file's ``settings``
section, defaults. The config file itself is read by :mod:`roundhouse.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEFAULT_PORT", "Settings", "default_data_dir"]

DEFAULT_PORT = 8090


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("roundhouse", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUNDHOUSE_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_PORT
    data_dir: Path = Field(default_factory=default_data_dir)
    #: SQLAlchemy URL; empty means SQLite at ``data_dir/registry.db``.
    database_url: str = ""
    config: Path | None = None
    #: Ports handed to local-http servers, inclusive.
    port_range: Annotated[tuple[int, int], NoDecode] = (8100, 8200)
    #: Request bodies above this get 413 from the management API.
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 1 << 20
    #: Request bodies above this get 413 on the MCP endpoints (tool arguments can be large).
    max_mcp_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16 << 20
    #: Lines of stderr kept in memory per instance, and the size of its log file before rotation.
    stderr_ring_lines: Annotated[int, Field(ge=10, le=100_000)] = 1000
    stderr_log_bytes: Annotated[int, Field(ge=4096, le=1 << 30)] = 5 << 20
    stderr_log_backups: Annotated[int, Field(ge=0, le=100)] = 3
    #: Origins allowed to call the HTTP endpoints from a browser besides the gateway's own.
    allowed_origins: Annotated[list[str], NoDecode] = []
    log_level: str = "info"
    #: Between a server's slug and a tool or prompt name on the aggregate endpoint (``/mcp``).
    namespace_separator: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,4}$")] = "__"
    #: What the aggregate endpoint does when two servers offer the same name: ``prefix`` (every
    #: name carries its slug), ``priority`` (plain names; the higher priority keeps the plain name,
    #: the others are prefixed), ``error`` (plain names; a clashing name is left out and reported).
    collision_policy: Literal["prefix", "priority", "error"] = "prefix"
    #: Longest name offered to clients; longer ones end in a stable hash instead.
    max_name_length: Annotated[int, Field(ge=16, le=128)] = 64
    #: Deploy the bundled Bindery task server (slug ``bindery``) in a fresh data dir.
    bindery: bool = True

    @field_validator("port_range", mode="before")
    @classmethod
    def _parse_port_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            low, sep, high = value.partition("-")
            if not sep:
                raise ValueError("port_range must look like 8100-8200")
            return (int(low), int(high))
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _port_range_in_order(self) -> Settings:
        low, high = self.port_range
        if not (1 <= low <= high <= 65535):
            raise ValueError(f"port_range {low}-{high} is inverted or outside 1-65535")
        return self

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'registry.db'}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
