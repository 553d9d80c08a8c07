"""The face's 14 tools as data: schemas, annotations, argument checks and the REST requests."""

from __future__ import annotations

import jsonschema
import pytest

from roundhouse.bindery.face.tools import TOOLS, Request
from roundhouse.errors import InvalidInput

# docs/BINDERY.md, "The 14 tools": (readOnly, idempotent, destructive).
ANNOTATIONS = {
    "create_task": (False, False, False),
    "get_task": (True, True, False),
    "update_task": (False, True, False),
    "delete_task": (False, True, True),
    "list_tasks": (True, True, False),
    "search_tasks": (True, True, False),
    "complete_task": (False, True, False),
    "add_subtask": (False, False, False),
    "get_task_tree": (True, True, False),
    "add_dependency": (False, True, False),
    "remove_dependency": (False, True, True),
    "get_ready_tasks": (True, True, False),
    "add_comment": (False, False, False),
    "get_stats": (True, True, False),
}


def test_there_are_the_fourteen_tools_of_the_contract():
    assert set(TOOLS) == set(ANNOTATIONS)


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_each_tool_has_valid_schemas_and_the_agreed_annotations(name):
    definition = TOOLS[name].definition()
    jsonschema.Draft202012Validator.check_schema(definition["inputSchema"])
    jsonschema.Draft202012Validator.check_schema(definition["outputSchema"])
    assert definition["inputSchema"]["type"] == "object"
    assert definition["outputSchema"]["type"] == "object"
    hints = definition["annotations"]
    read_only, idempotent, destructive = ANNOTATIONS[name]
    assert hints["readOnlyHint"] is read_only
    assert hints["idempotentHint"] is idempotent
    assert hints["destructiveHint"] is destructive


def test_create_task_sends_the_clean_fields():
    tool = TOOLS["create_task"]
    args = tool.parse(
        {"title": "  Write\tdocs\x00 ", "description": "a\nb\x07", "tags": ["b", "a", "b"]}
    )
    assert args == {"title": "Write docs", "description": "a\nb", "tags": ["a", "b"]}
    assert tool.build(args) == Request("POST", "/api/tasks", json=args)


def test_update_task_takes_updates_as_an_object_or_a_json_string():
    tool = TOOLS["update_task"]
    as_object = tool.parse({"task_id": 3, "updates": {"status": "done"}})
    as_string = tool.parse({"task_id": 3, "updates": '{"status": "done"}'})
    assert as_object == as_string == {"task_id": 3, "updates": {"status": "done"}}
    assert tool.build(as_object) == Request("PATCH", "/api/tasks/3", json={"status": "done"})


def test_an_empty_update_is_refused():
    tool = TOOLS["update_task"]
    with pytest.raises(InvalidInput, match="at least one field"):
        tool.build(tool.parse({"task_id": 3, "updates": "{}"}))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"task_id": 1, "updates": {"owner": "x"}}, "unknown argument updates.'owner'"),
        ({"task_id": 1, "updates": {"status": "finished"}}, "updates.status must be one of"),
        ({"task_id": 1, "updates": "not json"}, "the string is not JSON"),
        ({"task_id": 1, "updates": "[1]"}, "the string holds an array"),
        ({"task_id": 1, "updates": {"__proto__": {}}}, "forbidden key"),
        ({"task_id": "1; DROP TABLE tasks", "updates": {}}, "task_id must be an integer"),
        ({"task_id": True, "updates": {}}, "task_id must be an integer"),
        ({"task_id": 0, "updates": {}}, "task_id must be at least 1"),
        ({"updates": {}}, "task_id is required"),
    ],
)
def test_bad_update_arguments_are_refused_clearly(arguments, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(".", r"\.")):
        TOOLS["update_task"].parse(arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "title is required"),
        ({"title": ""}, "title must not be empty"),
        ({"title": "x" * 501}, "title is too long"),
        ({"title": 5}, "title must be a string"),
        ({"title": "x", "priority": "asap"}, "priority must be one of"),
        ({"title": "x", "tags": "a,b"}, "tags must be an array"),
        ({"title": "x", "tags": ["t"] * 21}, "at most 20"),
        ({"title": "x", "tags": ["x" * 51]}, "too long"),
        ({"title": "x", "parent_id": "3"}, "parent_id must be an integer or null"),
        ({"title": "x", "owner": "me"}, "unknown argument"),
    ],
)
def test_bad_create_arguments_are_refused_clearly(arguments, message):
    with pytest.raises(InvalidInput, match=message):
        TOOLS["create_task"].parse(arguments)


def test_whole_numbers_sent_as_floats_are_integers():
    assert TOOLS["get_task"].parse({"task_id": 7.0}) == {"task_id": 7}
    with pytest.raises(InvalidInput):
        TOOLS["get_task"].parse({"task_id": 7.5})


def test_list_filters_become_query_parameters_with_null_parent_as_none():
    tool = TOOLS["list_tasks"]
    args = tool.parse({"filters": {"status": "todo", "parent_id": None}, "limit": 5, "offset": 0})
    request = tool.build(args)
    assert request.params == {"status": "todo", "parent_id": "none", "limit": 5, "offset": 0}


@pytest.mark.parametrize(("limit", "ok"), [(1, True), (200, True), (0, False), (201, False)])
def test_limits_are_bounded(limit, ok):
    tool = TOOLS["get_ready_tasks"]
    if ok:
        assert tool.parse({"limit": limit}) == {"limit": limit}
    else:
        with pytest.raises(InvalidInput, match="limit must be"):
            tool.parse({"limit": limit})


def test_requests_of_the_other_tools_follow_the_rest_contract():
    def req(name: str, **args: object) -> Request:
        tool = TOOLS[name]
        return tool.build(tool.parse(args))

    assert req("get_task", task_id=4) == Request("GET", "/api/tasks/4")
    assert req("delete_task", task_id=4, cascade=True) == Request(
        "DELETE", "/api/tasks/4", params={"cascade": "true"}
    )
    assert req("search_tasks", query="docs", limit=3) == Request(
        "GET", "/api/search", params={"q": "docs", "limit": 3}
    )
    assert req("complete_task", task_id=4) == Request("POST", "/api/tasks/4/complete")
    assert req("add_subtask", parent_id=4, title="sub") == Request(
        "POST", "/api/tasks/4/subtasks", json={"title": "sub"}
    )
    assert req("get_task_tree", task_id=4, max_depth=2) == Request(
        "GET", "/api/tasks/4/tree", params={"max_depth": 2}
    )
    assert req("add_dependency", task_id=4, depends_on=5) == Request(
        "POST", "/api/tasks/4/dependencies", json={"depends_on": 5}
    )
    assert req("remove_dependency", task_id=4, depends_on=5) == Request(
        "DELETE", "/api/tasks/4/dependencies/5"
    )
    assert req("add_comment", task_id=4, body="hi") == Request(
        "POST", "/api/tasks/4/comments", json={"body": "hi"}
    )
    assert req("get_stats") == Request("GET", "/api/stats")


def test_arguments_nested_fifty_deep_are_refused():
    value: dict[str, object] = {}
    for _ in range(50):
        value = {"a": value}
    with pytest.raises(InvalidInput, match="nested deeper"):
        TOOLS["list_tasks"].parse({"filters": value})
