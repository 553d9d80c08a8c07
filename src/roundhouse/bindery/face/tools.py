"""The 14 tools of the Bindery MCP face: what each takes, returns and promises (docs/BINDERY.md).

A :class:`Tool` is pure data plus two small functions: ``build`` turns clean arguments into the
backend's REST request, ``shape`` turns the backend's answer into the ``structuredContent``. Its
annotations decide the resilience policy too: reads are cached, idempotent tools are retried,
every mutation empties the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from roundhouse.bindery.face import schemas
from roundhouse.bindery.face.params import Param, params_schema, parse_arguments
from roundhouse.errors import InvalidInput

__all__ = ["TOOLS", "Request", "Tool"]


@dataclass(frozen=True, slots=True)
class Request:
    """One call to the backend's REST API."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None


def _as_is(body: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return dict(body)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    output_schema: dict[str, Any]
    build: Callable[[dict[str, Any]], Request]
    shape: Callable[[Any, Mapping[str, Any]], dict[str, Any]] = _as_is
    read_only: bool = False
    idempotent: bool = False
    destructive: bool = False

    @property
    def mutation(self) -> bool:
        return not self.read_only

    def parse(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        return parse_arguments(self.params, arguments)

    def definition(self) -> dict[str, Any]:
        """The ``tools/list`` entry."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": params_schema(self.params),
            "outputSchema": self.output_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                # Only meaningful for tools that write; stated for all so no default applies.
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent or self.read_only,
                "openWorldHint": False,
            },
        }


# --- parameters -----------------------------------------------------------------------------------

TASK_ID: Final = Param("task_id", "id", "The task's id.", required=True)
TITLE: Final = Param(
    "title", "line", "Short title, 1-500 characters.", required=True, min_length=1, max_length=500
)
DESCRIPTION: Final = Param("description", "text", "Longer description.", max_length=10_000)
STATUS: Final = Param("status", "choice", "Task status.", choices=schemas.STATUSES)
PRIORITY: Final = Param("priority", "choice", "Task priority.", choices=schemas.PRIORITIES)
TAGS: Final = Param("tags", "tags", "Up to 20 tags of 1-50 characters; stored sorted and unique.")
PARENT_ID: Final = Param("parent_id", "id", "Parent task id, or null.", nullable=True)
LIMIT: Final = Param("limit", "int", "How many to return (1-200).", minimum=1, maximum=200)
DEPENDS_ON: Final = Param("depends_on", "id", "The task it depends on.", required=True)

UPDATES: Final = Param(
    "updates",
    "object",
    "Fields to change: title, description, status, priority, tags, parent_id."
    " An object, or a JSON string of one.",
    required=True,
    fields=(
        Param("title", "line", "New title.", min_length=1, max_length=500),
        DESCRIPTION,
        STATUS,
        PRIORITY,
        TAGS,
        PARENT_ID,
    ),
)
FILTERS: Final = Param(
    "filters",
    "object",
    "Filters: status, priority, tag, parent_id (null for top-level tasks)."
    " An object, or a JSON string of one.",
    fields=(
        STATUS,
        PRIORITY,
        Param("tag", "line", "A tag the task carries.", min_length=1, max_length=50),
        Param("parent_id", "id", "Parent task id; null for top-level tasks.", nullable=True),
    ),
)


# --- requests and shapes --------------------------------------------------------------------------


def _task_path(args: Mapping[str, Any], suffix: str = "") -> str:
    return f"/api/tasks/{args['task_id']}{suffix}"


def _without(args: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in names}


def _update_request(args: dict[str, Any]) -> Request:
    updates = args["updates"]
    if not updates:
        raise InvalidInput("updates must name at least one field to change", field="updates")
    return Request("PATCH", _task_path(args), json=updates)


def _list_request(args: dict[str, Any]) -> Request:
    query: dict[str, Any] = {}
    for key, value in (args.get("filters") or {}).items():
        query[key] = "none" if key == "parent_id" and value is None else value
    for key in ("limit", "offset"):
        if key in args:
            query[key] = args[key]
    return Request("GET", "/api/tasks", params=query)


def _deleted(body: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"deleted": True, "task_id": args["task_id"], "cascade": bool(args.get("cascade"))}


def _query(args: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: args[name] for name in names if name in args}


TOOLS: Final[dict[str, Tool]] = {
    tool.name: tool
    for tool in (
        Tool(
            "create_task",
            "Create task",
            "Create a task. Returns the task with its id.",
            (TITLE, DESCRIPTION, STATUS, PRIORITY, TAGS, PARENT_ID),
            schemas.TASK,
            lambda a: Request("POST", "/api/tasks", json=a),
        ),
        Tool(
            "get_task",
            "Get task",
            "One task by id.",
            (TASK_ID,),
            schemas.TASK,
            lambda a: Request("GET", _task_path(a)),
            read_only=True,
        ),
        Tool(
            "update_task",
            "Update task",
            "Change fields of a task; returns the updated task.",
            (TASK_ID, UPDATES),
            schemas.TASK,
            _update_request,
            idempotent=True,
        ),
        Tool(
            "delete_task",
            "Delete task",
            "Delete a task; with cascade, its subtasks too (without, a task with subtasks stays).",
            (TASK_ID, Param("cascade", "bool", "Also delete the task's subtasks.")),
            schemas.DELETED,
            lambda a: Request(
                "DELETE", _task_path(a), params={"cascade": "true"} if a.get("cascade") else None
            ),
            _deleted,
            idempotent=True,
            destructive=True,
        ),
        Tool(
            "list_tasks",
            "List tasks",
            "Tasks, newest first, optionally filtered; with the total for paging.",
            (FILTERS, LIMIT, Param("offset", "int", "How many to skip.", minimum=0)),
            schemas.TASK_PAGE,
            _list_request,
            read_only=True,
        ),
        Tool(
            "search_tasks",
            "Search tasks",
            "Tasks whose title, description, tags or comments contain the text.",
            (
                Param(
                    "query",
                    "line",
                    "Text to look for.",
                    required=True,
                    min_length=1,
                    max_length=200,
                ),
                LIMIT,
            ),
            schemas.TASK_LIST,
            lambda a: Request("GET", "/api/search", params={"q": a["query"], **_query(a, "limit")}),
            read_only=True,
        ),
        Tool(
            "complete_task",
            "Complete task",
            "Mark a task done. Fails while a task it depends on is not done.",
            (TASK_ID,),
            schemas.TASK,
            lambda a: Request("POST", _task_path(a, "/complete")),
            idempotent=True,
        ),
        Tool(
            "add_subtask",
            "Add subtask",
            "Create a task under a parent task.",
            (
                Param("parent_id", "id", "The parent task's id.", required=True),
                TITLE,
                DESCRIPTION,
                PRIORITY,
                TAGS,
            ),
            schemas.TASK,
            lambda a: Request(
                "POST", f"/api/tasks/{a['parent_id']}/subtasks", json=_without(a, "parent_id")
            ),
        ),
        Tool(
            "get_task_tree",
            "Get task tree",
            "A task with its subtasks, recursively, down to max_depth levels.",
            (
                TASK_ID,
                Param("max_depth", "int", "Levels to descend (1-10).", minimum=1, maximum=10),
            ),
            schemas.TASK_TREE,
            lambda a: Request("GET", _task_path(a, "/tree"), params=_query(a, "max_depth")),
            read_only=True,
        ),
        Tool(
            "add_dependency",
            "Add dependency",
            "Make a task wait for another. Refused when it would close a cycle.",
            (TASK_ID, DEPENDS_ON),
            schemas.TASK,
            lambda a: Request(
                "POST", _task_path(a, "/dependencies"), json={"depends_on": a["depends_on"]}
            ),
            idempotent=True,
        ),
        Tool(
            "remove_dependency",
            "Remove dependency",
            "Stop a task waiting for another.",
            (TASK_ID, DEPENDS_ON),
            schemas.TASK,
            lambda a: Request("DELETE", _task_path(a, f"/dependencies/{a['depends_on']}")),
            idempotent=True,
            destructive=True,
        ),
        Tool(
            "get_ready_tasks",
            "Get ready tasks",
            "Tasks to do whose dependencies are all done.",
            (LIMIT,),
            schemas.TASK_LIST,
            lambda a: Request("GET", "/api/tasks/ready", params=_query(a, "limit")),
            read_only=True,
        ),
        Tool(
            "add_comment",
            "Add comment",
            "Comment on a task.",
            (
                TASK_ID,
                Param(
                    "body", "text", "The comment.", required=True, min_length=1, max_length=10_000
                ),
                Param(
                    "author",
                    "line",
                    "Who writes it (default: assistant).",
                    min_length=1,
                    max_length=100,
                ),
            ),
            schemas.COMMENT,
            lambda a: Request("POST", _task_path(a, "/comments"), json=_without(a, "task_id")),
        ),
        Tool(
            "get_stats",
            "Get statistics",
            "Counts of tasks by status and priority, ready tasks, dependencies and comments.",
            (),
            schemas.STATS,
            lambda a: Request("GET", "/api/stats"),
            read_only=True,
        ),
    )
}
