"""The operations layer both faces share: a method name and a params object in, JSON out.

Each method of the JSON-RPC face (named as the MCP face's tools, plus ``list_comments``) is a
:class:`Method`: the model its params must fit, the operation it runs and whether it writes.
REST routes (:mod:`.http`) build the same params from path, query and body and call the same
:meth:`Bindery.call`, so both faces validate and behave alike by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from roundhouse.bindery.backend import models as m
from roundhouse.bindery.backend import operations as ops
from roundhouse.bindery.backend.database import Database, Op
from roundhouse.bindery.backend.errors import NotFound
from roundhouse.bindery.backend.monitor import analyze

__all__ = ["METHODS", "Bindery", "Method"]


@dataclass(frozen=True, slots=True)
class Method:
    model: type[BaseModel]
    run: Callable[[Any], Op[Any]]
    write: bool


METHODS: dict[str, Method] = {
    "create_task": Method(m.CreateTask, lambda p: ops.create_task(p, p.parent_id), True),
    "get_task": Method(m.TaskId, lambda p: ops.get_task(p.task_id), False),
    "update_task": Method(m.UpdateTask, lambda p: ops.update_task(p.task_id, p.updates), True),
    "delete_task": Method(m.DeleteTask, lambda p: ops.delete_task(p.task_id, p.cascade), True),
    "list_tasks": Method(
        m.ListTasks, lambda p: ops.list_tasks(p.filters, p.limit, p.offset), False
    ),
    "search_tasks": Method(m.Search, lambda p: ops.search_tasks(p.query, p.limit), False),
    "complete_task": Method(m.TaskId, lambda p: ops.complete_task(p.task_id), True),
    "add_subtask": Method(m.AddSubtask, lambda p: ops.create_task(p, p.parent_id), True),
    "get_task_tree": Method(m.Tree, lambda p: ops.get_tree(p.task_id, p.max_depth), False),
    "add_dependency": Method(
        m.AddDependency, lambda p: ops.add_dependency(p.task_id, p.depends_on), True
    ),
    "remove_dependency": Method(
        m.AddDependency, lambda p: ops.remove_dependency(p.task_id, p.depends_on), True
    ),
    "get_ready_tasks": Method(m.Ready, lambda p: ops.ready_tasks(p.limit), False),
    "add_comment": Method(
        m.AddComment, lambda p: ops.add_comment(p.task_id, p.body, p.author), True
    ),
    "list_comments": Method(m.TaskId, lambda p: ops.list_comments(p.task_id), False),
    "get_stats": Method(m.Empty, lambda p: ops.stats(), False),
}


class Bindery:
    """The service: a :class:`Database` and the methods over it."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def call(self, name: str, params: Any) -> Any:
        method = METHODS.get(name)
        if method is None:
            raise NotFound(f"no method {name!r}")
        parsed = m.parse(method.model, {} if params is None else params)
        return await self.database.run(method.run(parsed), write=method.write)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``(answering, body)`` for ``/health``."""
        try:
            await self.database.ping()
            answering = True
        except Exception:
            answering = False
        body = {
            "status": "ok" if answering else "unavailable",
            "database": self.database.dialect_name,
            "pool": self.database.pool.metrics(),
        }
        return answering, body

    def pool_metrics(self) -> dict[str, Any]:
        return self.database.pool.metrics()

    def pool_health(self) -> dict[str, Any]:
        return analyze(self.database.pool.metrics())
