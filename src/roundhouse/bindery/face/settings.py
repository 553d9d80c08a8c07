"""The face's settings, from the environment by their plain names (no prefix).

MCP_AUTO_LAUNCH_BACKEND   true    run the backend as a child; false: connect to BINDERY_URL
MCP_PRODUCTION            false   generic error messages instead of detailed, redacted ones
BINDERY_URL               http://127.0.0.1:3000   the backend, when not launched here
BINDERY_PORT              3000    the launched backend's port; 0: any free port
BINDERY_PORT_RANGE        3001-3999   where to look when BINDERY_PORT is taken
BINDERY_DB                (user data dir)/bindery/bindery.db   a path or a database URL
BINDERY_TIMEOUT           30      seconds for each HTTP phase of a backend call
BINDERY_CACHE_TTL         300     seconds a read stays cached; 0 disables the cache
BINDERY_BREAKER_FAILURES  5       consecutive failures that open the circuit
BINDERY_BREAKER_RECOVERY  60      seconds the circuit stays open before a probe
BINDERY_STARTUP_TIMEOUT   30      seconds the launched backend gets to become healthy
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["FaceSettings", "default_database"]


def default_database() -> str:
    """``bindery.db`` in the platform's user data dir, where ``roundhouse up`` keeps its own."""
    data = Path(platformdirs.user_data_dir("roundhouse", appauthor=False))
    return str(data / "bindery" / "bindery.db")


class FaceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    mcp_auto_launch_backend: bool = True
    mcp_production: bool = False
    bindery_url: str = "http://127.0.0.1:3000"
    bindery_port: Annotated[int, Field(ge=0, le=65535)] = 3000
    bindery_port_range: Annotated[tuple[int, int], NoDecode] = (3001, 3999)
    bindery_db: str = ""
    bindery_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    bindery_cache_ttl: Annotated[float, Field(ge=0)] = 300.0
    bindery_breaker_failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    bindery_breaker_recovery: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    bindery_startup_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("bindery_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The backend is local and the pooled client speaks plain HTTP/1.1 only.
        if not value.startswith("http://"):
            raise ValueError("BINDERY_URL must start with http:// (the backend is local)")
        return value.rstrip("/")

    @field_validator("bindery_port_range", mode="before")
    @classmethod
    def _parse_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            low, sep, high = value.partition("-")
            if not sep:
                raise ValueError("BINDERY_PORT_RANGE must look like 3001-3999")
            return (int(low), int(high))
        return value

    @model_validator(mode="after")
    def _range_in_order(self) -> FaceSettings:
        low, high = self.bindery_port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"BINDERY_PORT_RANGE {low}-{high} is inverted or outside 1-65535")
        return self

    @property
    def database(self) -> str:
        return self.bindery_db or default_database()
