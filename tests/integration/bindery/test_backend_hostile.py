"""Bad input at the backend's edge: each request gets the contract's error (status, code, a
message without SQL, paths or stacks), and afterwards every row of the database is as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.bindery.conftest import Served

MIB = 1024 * 1024
LEAKS = ("select ", "insert ", "sqlite", "asyncpg", "traceback", "/tmp", ".py", "site-packages")


@pytest.fixture
async def seeded(served: Served) -> Served:
    """Two tasks (one a subtask), a dependency, a comment: something to be left unchanged."""
    root = await served.create(title="root", tags=["keep"])
    child = (
        await served.client.post(f"/api/tasks/{root['id']}/subtasks", json={"title": "c"})
    ).json()
    await served.client.post(
        f"/api/tasks/{root['id']}/dependencies", json={"depends_on": child["id"]}
    )
    await served.client.post(f"/api/tasks/{root['id']}/comments", json={"body": "note"})
    return served


def check_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    text = str(error).lower()
    assert not any(leak in text for leak in LEAKS), text


JSON = {"content-type": "application/json"}

# (method, path, body or None, query or None, status, code)
BAD_REQUESTS: list[tuple[str, str, Any, Any, int, str]] = [
    ("POST", "/api/tasks", {}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": 5}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": ["x"]}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "   "}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x" * 501}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "description": "d" * 10_001}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "status": "finished"}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "priority": 1}, None, 422, "invalid"),
    (
        "POST",
        "/api/tasks",
        {"title": "x", "tags": [f"t{n}" for n in range(21)]},
        None,
        422,
        "invalid",
    ),
    ("POST", "/api/tasks", {"title": "x", "tags": ["t" * 51]}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "tags": "a,b"}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "parent_id": "1"}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "parent_id": 2**40}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x", "parent_id": 999}, None, 404, "not_found"),
    ("POST", "/api/tasks", {"title": "x", "id": 7}, None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "nul\u0000byte"}, None, 422, "invalid"),
    ("POST", "/api/tasks", [{"title": "x"}], None, 422, "invalid"),
    ("POST", "/api/tasks", {"title": "x"}, {"debug": "1"}, 422, "invalid"),
    ("PATCH", "/api/tasks/1", {"title": None}, None, 422, "invalid"),
    ("PATCH", "/api/tasks/1", {"depends_on": [2]}, None, 422, "invalid"),
    ("PATCH", "/api/tasks/1", {"parent_id": 1}, None, 409, "conflict"),
    ("PATCH", "/api/tasks/1", {"parent_id": 2}, None, 409, "conflict"),
    ("PATCH", "/api/tasks/999", {"title": "y"}, None, 404, "not_found"),
    ("GET", "/api/tasks/999", None, None, 404, "not_found"),
    ("GET", "/api/tasks/abc", None, None, 422, "invalid"),
    ("GET", "/api/tasks/0", None, None, 404, "not_found"),
    ("GET", "/api/tasks/-1", None, None, 422, "invalid"),
    ("GET", "/api/tasks/" + "9" * 400, None, None, 404, "not_found"),
    ("GET", "/api/tasks/1%27%20OR%201=1", None, None, 422, "invalid"),
    ("DELETE", "/api/tasks/1", None, None, 409, "conflict"),
    ("DELETE", "/api/tasks/1", None, {"cascade": "yes"}, 422, "invalid"),
    ("DELETE", "/api/tasks/999", None, None, 404, "not_found"),
    ("POST", "/api/tasks/1/complete", None, None, 409, "conflict"),
    ("POST", "/api/tasks/999/complete", None, None, 404, "not_found"),
    ("POST", "/api/tasks/1/complete", {"force": True}, None, 422, "invalid"),
    ("POST", "/api/tasks/999/subtasks", {"title": "x"}, None, 404, "not_found"),
    ("POST", "/api/tasks/1/subtasks", {"title": "x", "parent_id": 2}, None, 422, "invalid"),
    ("GET", "/api/tasks/1/tree", None, {"max_depth": "11"}, 422, "invalid"),
    ("GET", "/api/tasks/1/tree", None, {"max_depth": "deep"}, 422, "invalid"),
    ("GET", "/api/tasks/999/tree", None, None, 404, "not_found"),
    ("POST", "/api/tasks/2/dependencies", {"depends_on": 1}, None, 409, "conflict"),
    ("POST", "/api/tasks/1/dependencies", {"depends_on": 1}, None, 422, "invalid"),
    ("POST", "/api/tasks/1/dependencies", {"depends_on": "2"}, None, 422, "invalid"),
    ("POST", "/api/tasks/1/dependencies", {"depends_on": 999}, None, 404, "not_found"),
    ("POST", "/api/tasks/999/dependencies", {"depends_on": 1}, None, 404, "not_found"),
    ("DELETE", "/api/tasks/2/dependencies/1", None, None, 404, "not_found"),
    ("DELETE", "/api/tasks/1/dependencies/x", None, None, 422, "invalid"),
    ("POST", "/api/tasks/1/comments", {"body": ""}, None, 422, "invalid"),
    ("POST", "/api/tasks/1/comments", {"body": "x", "author": "a" * 101}, None, 422, "invalid"),
    ("POST", "/api/tasks/999/comments", {"body": "x"}, None, 404, "not_found"),
    ("GET", "/api/tasks/999/comments", None, None, 404, "not_found"),
    ("GET", "/api/tasks", None, {"limit": "0"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"limit": "201"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"limit": "ten"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"offset": "-1"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"status": "DROP"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"parent_id": "top"}, 422, "invalid"),
    ("GET", "/api/tasks", None, {"sort": "id"}, 422, "invalid"),
    ("GET", "/api/tasks", None, [("tag", "a"), ("tag", "b")], 422, "invalid"),
    ("GET", "/api/tasks", None, [(f"k{n}", "v") for n in range(50)], 422, "invalid"),
    ("GET", "/api/search", None, None, 422, "invalid"),
    ("GET", "/api/search", None, {"q": ""}, 422, "invalid"),
    ("GET", "/api/search", None, {"q": "x" * 201}, 422, "invalid"),
    ("GET", "/api/tasks/ready", None, {"limit": "1000"}, 422, "invalid"),
    ("GET", "/api/stats", None, {"x": "1"}, 422, "invalid"),
    ("GET", "/api/nothing", None, None, 404, "not_found"),
    ("GET", "/api/tasks/1/unknown", None, None, 404, "not_found"),
    ("PUT", "/api/tasks/1", {"title": "x"}, None, 405, "method_not_allowed"),
    ("POST", "/api/stats", None, None, 405, "method_not_allowed"),
]


async def test_each_bad_request_is_refused_and_changes_nothing(seeded: Served) -> None:
    # One served backend for the whole table (a server per case would cost a minute).
    before = await seeded.dump()
    for method, path, body, query, status, code in BAD_REQUESTS:
        case = f"{method} {path[:60]} body={str(body)[:60]} query={str(query)[:60]}"
        response = await seeded.client.request(method, path, json=body, params=query)
        try:
            check_error(response, status, code)
            assert await seeded.dump() == before
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from exc


async def test_a_declared_body_over_one_mib_is_too_large(seeded: Served) -> None:
    before = await seeded.dump()
    body = b'{"title": "' + b"x" * MIB + b'"}'
    response = await seeded.client.post("/api/tasks", content=body, headers=JSON)
    check_error(response, 413, "too_large")
    assert await seeded.dump() == before


async def test_a_chunked_body_over_one_mib_is_too_large(seeded: Served) -> None:
    before = await seeded.dump()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(20):
            yield b"x" * 64 * 1024
        yield b'"}'

    response = await seeded.client.post("/api/tasks", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    check_error(response, 413, "too_large")
    assert await seeded.dump() == before
    rpc = await seeded.client.post("/rpc", content=chunks(), headers=JSON)
    assert rpc.status_code == 413 and rpc.json()["error"]["data"]["code"] == "too_large"


async def test_a_body_just_under_one_mib_is_read(seeded: Served) -> None:
    body = b'{"title": "x", "description": "' + b"d" * (MIB - 100) + b'"}'
    response = await seeded.client.post("/api/tasks", content=body, headers=JSON)
    check_error(response, 422, "invalid")  # read, then refused for its length


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"title": "x", "tags": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"title": "x", ' + b",".join(b'"k%d": 1' % n for n in range(50_000)) + b"}",
        b'{"title": "\\ud800"}',
        b'{"title": "x"',
        b"\xff\xfe{}",
        b"",
    ],
    ids=["deep", "deep-tags", "wide", "lone-surrogate", "truncated", "not-utf8", "empty"],
)
async def test_json_bombs_and_broken_bodies_are_invalid(seeded: Served, body: bytes) -> None:
    before = await seeded.dump()
    response = await seeded.client.post("/api/tasks", content=body, headers=JSON)
    check_error(response, 422, "invalid")
    rpc = await seeded.client.post("/rpc", content=body, headers=JSON)
    assert rpc.status_code == 200 and rpc.json()["error"]["code"] in (-32700, -32600)
    assert await seeded.dump() == before


async def test_a_body_not_sent_as_json_is_refused(seeded: Served) -> None:
    before = await seeded.dump()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = await seeded.client.post(
            "/api/tasks", content=b'{"title": "csrf"}', headers=headers
        )
        check_error(response, 415, "unsupported_media_type")
    assert await seeded.dump() == before


async def test_bad_rpc_params_change_nothing(seeded: Served) -> None:
    before = await seeded.dump()
    for method, params in [
        ("create_task", {"title": "x", "tags": [1]}),
        ("update_task", {"task_id": 1, "updates": {"parent_id": 2}}),
        ("add_dependency", {"task_id": 2, "depends_on": 1}),
        ("delete_task", {"task_id": 1}),
        ("complete_task", {"task_id": 1}),
        ("add_comment", {"task_id": 999, "body": "x"}),
    ]:
        answer = await seeded.rpc(method, params)
        assert "error" in answer, (method, answer)
    assert await seeded.dump() == before
