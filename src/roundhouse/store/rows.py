"""Records to rows and back, and the rules on ``desired_instances``: one copy for both stores.

A row is a mapping from column name to value, as either driver returns it; what goes in a column
(the spec as sorted compact JSON, states as their values, the stderr tail as a JSON list) is
decided here only, so a registry written by one store reads the same through the other.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Protocol

from roundhouse.control.states import Health, InstanceState
from roundhouse.errors import InvalidInput, NotFound, StoreError
from roundhouse.spec import ServerSpec, spec_to_storage
from roundhouse.store.records import InstanceRecord, ServerRecord

__all__ = [
    "INSTANCE_COLUMNS",
    "SERVER_COLUMNS",
    "Row",
    "check_desired",
    "dump_spec",
    "instance_from_row",
    "instance_values",
    "no_server",
    "server_from_row",
]


class Row(Protocol):
    """A row by column name: a ``dict`` from ``sqlite3``, a ``RowMapping`` from SQLAlchemy."""

    def __getitem__(self, column: str, /) -> Any: ...


SERVER_COLUMNS = ("slug", "spec", "desired_instances", "generation", "created_at", "updated_at")
INSTANCE_COLUMNS = tuple(f.name for f in fields(InstanceRecord) if f.metadata.get("stored", True))


def check_desired(spec: ServerSpec, n: int | None) -> int:
    """``n``, or the spec's minimum for ``None``; ``InvalidInput`` outside min..max."""
    if n is None:
        return spec.instances.min
    low, high = spec.instances.min, spec.instances.max
    if not low <= n <= high:
        raise InvalidInput(
            f"instances must be between {low} and {high} for '{spec.slug}', not {n}",
            field="instances",
        )
    return n


def no_server(slug: str) -> NotFound:
    return NotFound(f"no server named '{slug}'")


def dump_spec(spec: ServerSpec) -> str:
    return json.dumps(spec_to_storage(spec), sort_keys=True, separators=(",", ":"))


def server_from_row(row: Row) -> ServerRecord:
    try:
        spec = ServerSpec.model_validate(json.loads(row["spec"]))
    except ValueError:  # pydantic's ValidationError and a JSON error are both ValueErrors
        # Never the validation message itself: it quotes the input, secrets included.
        raise StoreError(f"the stored spec of '{row['slug']}' is not valid any more") from None
    return ServerRecord(
        spec=spec,
        desired_instances=row["desired_instances"],
        generation=row["generation"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def instance_values(rec: InstanceRecord) -> dict[str, Any]:
    """The row of ``rec``, every stored column in :data:`INSTANCE_COLUMNS` order."""
    values = {name: getattr(rec, name) for name in INSTANCE_COLUMNS}
    values["state"] = InstanceState(rec.state).value
    values["health"] = Health(rec.health).value
    values["stderr_tail"] = json.dumps(list(rec.stderr_tail))
    return values


def instance_from_row(row: Row) -> InstanceRecord:
    data = {name: row[name] for name in INSTANCE_COLUMNS}
    data["state"] = InstanceState(data["state"])
    data["health"] = Health(data["health"])
    data["stderr_tail"] = json.loads(data["stderr_tail"])
    return InstanceRecord(**data)
