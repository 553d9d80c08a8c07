"""The JSON-RPC face: every method reaches the same operations as REST, and malformed requests,
batches, unknown methods and wrong params get the contract's error codes."""

from __future__ import annotations

from typing import Any

from roundhouse.bindery.backend import METHODS
from tests.integration.bindery.conftest import Served


async def test_every_method_answers_over_rpc(served: Served) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_task", {"title": "root", "tags": ["rpc"]}),
        ("add_subtask", {"parent_id": 1, "title": "child", "priority": "high"}),
        ("create_task", {"title": "dep"}),
        ("get_task", {"task_id": 1}),
        ("update_task", {"task_id": 1, "updates": {"description": "changed"}}),
        ("list_tasks", {"filters": {"tag": "rpc"}, "limit": 10, "offset": 0}),
        ("search_tasks", {"query": "child"}),
        ("add_dependency", {"task_id": 2, "depends_on": 3}),
        ("get_ready_tasks", {"limit": 10}),
        ("remove_dependency", {"task_id": 2, "depends_on": 3}),
        ("complete_task", {"task_id": 3}),
        ("get_task_tree", {"task_id": 1, "max_depth": 2}),
        ("add_comment", {"task_id": 1, "body": "hello", "author": "me"}),
        ("list_comments", {"task_id": 1}),
        ("get_stats", {}),
        ("delete_task", {"task_id": 1, "cascade": True}),
    ]
    assert {name for name, _ in calls} == set(METHODS)
    results = {}
    for number, (method, params) in enumerate(calls):
        answer = await served.rpc(method, params, request_id=number)
        assert answer["id"] == number and "error" not in answer, (method, answer)
        results[method] = answer["result"]
    assert results["add_subtask"]["parent_id"] == 1
    assert results["update_task"]["description"] == "changed"
    assert [t["id"] for t in results["list_tasks"]["items"]] == [1]
    assert [t["id"] for t in results["search_tasks"]["items"]] == [2]
    assert results["add_dependency"]["depends_on"] == [3]
    assert [t["id"] for t in results["get_ready_tasks"]["items"]] == [1, 3]
    assert results["complete_task"]["status"] == "done"
    assert results["get_task_tree"]["children"][0]["id"] == 2
    assert results["list_comments"]["items"][0]["body"] == "hello"
    assert results["get_stats"]["comments"] == 1
    assert results["delete_task"] == {"deleted": 1, "cascade": True}
    assert (await served.dump())["tasks"] != []  # task 3 is left
    assert (await served.client.get("/api/tasks/2")).status_code == 404


async def test_rest_and_rpc_return_the_same_task(served: Served) -> None:
    task = await served.create(title="same", tags=["t"])
    assert (await served.rpc("get_task", {"task_id": task["id"]}))["result"] == task


async def test_service_errors_keep_their_code_in_data(served: Served) -> None:
    missing = await served.rpc("get_task", {"task_id": 42})
    assert missing["error"]["code"] == -32004 and missing["error"]["data"]["code"] == "not_found"
    a = (await served.rpc("create_task", {"title": "a"}))["result"]
    b = (await served.rpc("create_task", {"title": "b"}))["result"]
    await served.rpc("add_dependency", {"task_id": a["id"], "depends_on": b["id"]})
    cycle = await served.rpc("add_dependency", {"task_id": b["id"], "depends_on": a["id"]})
    assert cycle["error"]["code"] == -32009 and cycle["error"]["data"]["code"] == "conflict"


async def _post(served: Served, content: bytes) -> Any:
    response = await served.client.post(
        "/rpc", content=content, headers={"content-type": "application/json"}
    )
    return response


async def test_malformed_json_is_a_parse_error(served: Served) -> None:
    for content in (b"{", b"not json", b'{"jsonrpc": "2.0",}', b"\xff\xfe"):
        response = await _post(served, content)
        assert response.status_code == 200
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "parse error: not valid JSON"},
        }


async def test_requests_that_are_not_jsonrpc_are_invalid_requests(served: Served) -> None:
    bad: list[Any] = [
        1,
        "text",
        None,
        {"id": 1, "method": "get_stats"},
        {"jsonrpc": "1.0", "id": 1, "method": "get_stats"},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": {"x": 1}, "method": "get_stats"},
        {"jsonrpc": "2.0", "id": True, "method": "get_stats"},
    ]
    for message in bad:
        answer = (await served.client.post("/rpc", json=message)).json()
        assert answer["error"]["code"] == -32600, message


async def test_unknown_methods_and_wrong_params(served: Served) -> None:
    unknown = await served.rpc("drop_everything", {})
    assert unknown["error"]["code"] == -32601
    for params in ([1, 2], "x", 5):
        answer = await served.rpc("get_task", params)
        assert answer["error"]["code"] == -32602
    for method, params in [
        ("get_task", {}),
        ("get_task", {"task_id": "1"}),
        ("get_task", {"task_id": 1, "extra": True}),
        ("create_task", {"title": ""}),
        ("list_tasks", {"filters": "status=todo"}),
        ("update_task", {"task_id": 1, "updates": {"title": None}}),
    ]:
        answer = await served.rpc(method, params)
        assert answer["error"]["code"] == -32602, (method, params, answer)
        assert answer["error"]["data"]["code"] == "invalid"


async def test_a_batch_answers_each_request_and_skips_notifications(served: Served) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "create_task", "params": {"title": "one"}},
        {"jsonrpc": "2.0", "method": "create_task", "params": {"title": "two"}},
        {"jsonrpc": "2.0", "id": "c", "method": "nope"},
        7,
        {"jsonrpc": "2.0", "id": "d", "method": "get_stats"},
    ]
    answers = (await served.client.post("/rpc", json=batch)).json()
    assert [answer["id"] for answer in answers] == ["a", "c", None, "d"]
    assert answers[1]["error"]["code"] == -32601 and answers[2]["error"]["code"] == -32600
    assert answers[3]["result"]["total"] == 2  # the notification ran too


async def test_notifications_only_get_no_content(served: Served) -> None:
    response = await served.client.post(
        "/rpc", json={"jsonrpc": "2.0", "method": "create_task", "params": {"title": "n"}}
    )
    assert response.status_code == 204 and response.content == b""
    assert len((await served.dump())["tasks"]) == 1


async def test_empty_and_oversized_batches_are_refused_whole(served: Served) -> None:
    empty = (await served.client.post("/rpc", json=[])).json()
    assert empty["error"]["code"] == -32600
    create = {"jsonrpc": "2.0", "id": 1, "method": "create_task", "params": {"title": "x"}}
    over = (await served.client.post("/rpc", json=[create] * 101)).json()
    assert isinstance(over, dict) and over["error"]["code"] == -32600
    assert (await served.dump())["tasks"] == []
    full = (await served.client.post("/rpc", json=[create] * 100)).json()
    assert len(full) == 100


async def test_rpc_takes_only_post_with_json(served: Served) -> None:
    assert (await served.client.get("/rpc")).status_code == 405
    plain = await served.client.post(
        "/rpc", content=b'{"jsonrpc":"2.0","id":1,"method":"get_stats"}',
        headers={"content-type": "text/plain"},
    )  # fmt: skip
    assert plain.status_code == 415 and plain.json()["error"]["code"] == -32600
