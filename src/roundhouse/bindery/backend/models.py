"""The shapes a caller may send, checked at this edge (pydantic, strict, unknown fields refused).

One model per operation, named for its JSON-RPC method; REST turns its path, query and body into
the same parameters, so both faces are held to the same rules (``docs/BINDERY.md``). Strict mode:
a JSON string is not an int, a number is not a string. Text may not hold NUL (Postgres cannot
store it) and titles are stripped of surrounding whitespace.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as _ValidationError

from roundhouse.bindery.backend.errors import Invalid

__all__ = [
    "MAX_ID",
    "PRIORITIES",
    "STATUSES",
    "AddComment",
    "AddDependency",
    "AddSubtask",
    "CreateTask",
    "DeleteTask",
    "Empty",
    "ListFilters",
    "ListTasks",
    "Ready",
    "Search",
    "TaskId",
    "TaskUpdates",
    "Tree",
    "UpdateTask",
    "parse",
]

STATUSES = ("todo", "in_progress", "blocked", "done", "cancelled")
PRIORITIES = ("low", "normal", "high", "urgent")
#: Ids are Postgres ``integer``s; a bigger one names no task.
MAX_ID = 2**31 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _sorted_unique(tags: list[str]) -> list[str]:
    return sorted(set(tags))


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_no_nul),
]
Description = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(_no_nul),
]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_sorted_unique)]
Status = Literal["todo", "in_progress", "blocked", "done", "cancelled"]
Priority = Literal["low", "normal", "high", "urgent"]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Limit = Annotated[int, Field(ge=1, le=200)]
Author = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_nul),
]
Body = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000),
    AfterValidator(_no_nul),
]
Query = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Empty(_Model):
    pass


class TaskFields(_Model):
    title: Title
    description: Description = ""
    status: Status = "todo"
    priority: Priority = "normal"
    tags: Tags = []


class CreateTask(TaskFields):
    parent_id: Id | None = None


class AddSubtask(TaskFields):
    parent_id: Id


class TaskId(_Model):
    task_id: Id


class TaskUpdates(_Model):
    """Only the fields given are changed; ``parent_id: null`` makes the task top-level."""

    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    tags: Tags | None = None
    parent_id: Id | None = None


class UpdateTask(_Model):
    task_id: Id
    updates: TaskUpdates


class DeleteTask(_Model):
    task_id: Id
    cascade: bool = False


class ListFilters(_Model):
    status: Status | None = None
    priority: Priority | None = None
    tag: Tag | None = None
    #: An id, or ``"none"`` for top-level tasks only.
    parent_id: Id | Literal["none"] | None = None
    q: Query | None = None


class ListTasks(_Model):
    filters: ListFilters = ListFilters()
    limit: Limit = 50
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class Search(_Model):
    query: Query
    limit: Limit = 50


class Tree(_Model):
    task_id: Id
    max_depth: Annotated[int, Field(ge=1, le=10)] = 10


class AddDependency(_Model):
    task_id: Id
    depends_on: Id


class Ready(_Model):
    limit: Limit = 50


class AddComment(_Model):
    task_id: Id
    body: Body
    author: Author = "assistant"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], params: Any) -> M:
    """``params`` checked against ``model``, or :class:`Invalid` naming each bad field.

    The messages are pydantic's, without the offending input (it may be huge or hostile).
    """
    if not isinstance(params, dict):
        raise Invalid("parameters must be a JSON object")
    try:
        return model.model_validate(params)
    except _ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or "(body)",
                "message": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ][:20]
        raise Invalid("invalid parameters", details=details) from None
