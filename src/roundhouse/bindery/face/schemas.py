"""Output schemas of the 14 tools: what ``structuredContent`` holds (docs/BINDERY.md).

Every result is an object: a task, a comment, ``{items, ...}``, the statistics, or the
acknowledgement of a deletion. Objects allow fields beyond those named, so a backend that grows
a field does not break clients that validate results.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "COMMENT",
    "COMMENT_LIST",
    "DELETED",
    "PRIORITIES",
    "STATS",
    "STATUSES",
    "TASK",
    "TASK_LIST",
    "TASK_PAGE",
    "TASK_TREE",
]

STATUSES: Final = ("todo", "in_progress", "blocked", "done", "cancelled")
PRIORITIES: Final = ("low", "normal", "high", "urgent")

_TIMESTAMP: Final = {"type": "string", "description": "ISO 8601, UTC"}
_TASK_PROPERTIES: Final[dict[str, Any]] = {
    "id": {"type": "integer"},
    "title": {"type": "string"},
    "description": {"type": "string"},
    "status": {"type": "string", "enum": list(STATUSES)},
    "priority": {"type": "string", "enum": list(PRIORITIES)},
    "tags": {"type": "array", "items": {"type": "string"}},
    "parent_id": {"type": ["integer", "null"]},
    "depends_on": {"type": "array", "items": {"type": "integer"}},
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
    "completed_at": {"type": ["string", "null"], "description": "ISO 8601, UTC"},
}
_TASK_REQUIRED: Final = ["id", "title", "status", "priority"]

TASK: Final[dict[str, Any]] = {
    "type": "object",
    "properties": _TASK_PROPERTIES,
    "required": _TASK_REQUIRED,
}

TASK_TREE: Final[dict[str, Any]] = {
    "type": "object",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                **_TASK_PROPERTIES,
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": _TASK_REQUIRED,
        }
    },
    "properties": {
        **_TASK_PROPERTIES,
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
    },
    "required": [*_TASK_REQUIRED, "children"],
}

TASK_LIST: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": TASK}},
    "required": ["items"],
}

TASK_PAGE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": TASK},
        "total": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
    },
    "required": ["items", "total", "limit", "offset"],
}

COMMENT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "task_id": {"type": "integer"},
        "author": {"type": "string"},
        "body": {"type": "string"},
        "created_at": _TIMESTAMP,
    },
    "required": ["id", "task_id", "author", "body"],
}

COMMENT_LIST: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": COMMENT}},
    "required": ["items"],
}

_COUNTS: Final = {"type": "object", "additionalProperties": {"type": "integer"}}

STATS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "total": {"type": "integer"},
        "by_status": _COUNTS,
        "by_priority": _COUNTS,
        "ready": {"type": "integer"},
        "with_dependencies": {"type": "integer"},
        "comments": {"type": "integer"},
    },
    "required": ["total", "by_status", "by_priority", "ready", "with_dependencies", "comments"],
}

DELETED: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "deleted": {"type": "boolean"},
        "task_id": {"type": "integer"},
        "cascade": {"type": "boolean"},
    },
    "required": ["deleted", "task_id", "cascade"],
}
