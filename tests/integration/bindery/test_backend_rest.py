"""Every REST route of the Bindery backend, on SQLite and Postgres, and what each one means:
filters, pagination, search, trees, readiness and statistics."""

from __future__ import annotations

import re

from tests.integration.bindery.conftest import Served

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_a_created_task_reads_back_with_defaults_and_sorted_unique_tags(
    served: Served,
) -> None:
    created = await served.create(title="  Write the docs  ", tags=["b", "a", "b"])
    assert created["title"] == "Write the docs"
    assert created["tags"] == ["a", "b"]
    assert created["status"] == "todo" and created["priority"] == "normal"
    assert created["description"] == "" and created["parent_id"] is None
    assert created["depends_on"] == [] and created["completed_at"] is None
    assert ISO.match(created["created_at"]) and created["created_at"] == created["updated_at"]
    fetched = await served.client.get(f"/api/tasks/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_a_task_created_done_has_its_completion_time(served: Served) -> None:
    task = await served.create(status="done")
    assert task["completed_at"] == task["created_at"]


async def test_patch_changes_only_the_given_fields(served: Served) -> None:
    task = await served.create(title="old", description="keep", tags=["x"])
    response = await served.client.patch(
        f"/api/tasks/{task['id']}", json={"title": "new", "priority": "urgent", "tags": ["y"]}
    )
    assert response.status_code == 200
    patched = response.json()
    assert (patched["title"], patched["priority"], patched["tags"]) == ("new", "urgent", ["y"])
    assert patched["description"] == "keep"
    assert patched["updated_at"] >= task["updated_at"]
    assert (await served.client.get(f"/api/tasks/{task['id']}")).json() == patched
    listed = await served.client.get("/api/tasks", params={"tag": "x"})
    assert listed.json()["items"] == []


async def test_patching_status_sets_and_clears_completed_at(served: Served) -> None:
    task = await served.create()
    done = (await served.client.patch(f"/api/tasks/{task['id']}", json={"status": "done"})).json()
    assert done["completed_at"] is not None
    again = (await served.client.patch(f"/api/tasks/{task['id']}", json={"status": "done"})).json()
    assert again["completed_at"] == done["completed_at"]
    reopened = await served.client.patch(f"/api/tasks/{task['id']}", json={"status": "todo"})
    assert reopened.json()["completed_at"] is None


async def test_patch_moves_a_task_under_a_parent_and_back_to_top_level(served: Served) -> None:
    parent = await served.create(title="parent")
    child = await served.create(title="child")
    moved = await served.client.patch(f"/api/tasks/{child['id']}", json={"parent_id": parent["id"]})
    assert moved.json()["parent_id"] == parent["id"]
    top = await served.client.patch(f"/api/tasks/{child['id']}", json={"parent_id": None})
    assert top.json()["parent_id"] is None


async def test_a_parent_cannot_become_a_subtask_of_its_descendant(served: Served) -> None:
    root = await served.create(title="root")
    child = (
        await served.client.post(f"/api/tasks/{root['id']}/subtasks", json={"title": "c"})
    ).json()
    grandchild = (
        await served.client.post(f"/api/tasks/{child['id']}/subtasks", json={"title": "g"})
    ).json()
    for parent in (grandchild["id"], root["id"]):
        response = await served.client.patch(f"/api/tasks/{root['id']}", json={"parent_id": parent})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"


async def test_delete_refuses_a_task_with_subtasks_unless_cascading(served: Served) -> None:
    root = await served.create(title="root")
    child = (
        await served.client.post(f"/api/tasks/{root['id']}/subtasks", json={"title": "c"})
    ).json()
    await served.client.post(f"/api/tasks/{child['id']}/subtasks", json={"title": "g"})
    await served.client.post(f"/api/tasks/{child['id']}/comments", json={"body": "note"})
    refused = await served.client.delete(f"/api/tasks/{root['id']}")
    assert refused.status_code == 409
    deleted = await served.client.delete(f"/api/tasks/{root['id']}", params={"cascade": "true"})
    assert deleted.status_code == 204 and deleted.content == b""
    assert all(rows == [] for rows in (await served.dump()).values())
    assert (await served.client.get(f"/api/tasks/{root['id']}")).status_code == 404


async def test_delete_of_a_leaf_needs_no_cascade_and_takes_its_links(served: Served) -> None:
    a = await served.create(title="a")
    b = await served.create(title="b", tags=["t"])
    await served.client.post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": b["id"]})
    assert (await served.client.delete(f"/api/tasks/{b['id']}")).status_code == 204
    assert (await served.client.get(f"/api/tasks/{a['id']}")).json()["depends_on"] == []
    assert (await served.dump())["task_tags"] == []


async def test_list_is_newest_first_with_total_limit_and_offset(served: Served) -> None:
    ids = [(await served.create(title=f"t{n}"))["id"] for n in range(5)]
    page = (await served.client.get("/api/tasks", params={"limit": 2, "offset": 1})).json()
    assert [item["id"] for item in page["items"]] == [ids[3], ids[2]]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    beyond = (await served.client.get("/api/tasks", params={"offset": 10})).json()
    assert beyond["items"] == [] and beyond["total"] == 5
    default = (await served.client.get("/api/tasks")).json()
    assert (default["limit"], default["offset"], len(default["items"])) == (50, 0, 5)


async def test_list_filters_by_status_priority_tag_parent_and_text(served: Served) -> None:
    root = await served.create(title="Root", priority="high", tags=["ops"])
    sub = (
        await served.client.post(
            f"/api/tasks/{root['id']}/subtasks",
            json={"title": "deploy", "description": "Roll OUT the release", "status": "blocked"},
        )
    ).json()
    other = await served.create(title="other", tags=["dev", "ops"], status="done")

    async def ids(**params: object) -> list[int]:
        response = await served.client.get("/api/tasks", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids(status="blocked") == [sub["id"]]
    assert await ids(priority="high") == [root["id"]]
    assert await ids(tag="ops") == [other["id"], root["id"]]
    assert await ids(tag="op") == []
    assert await ids(parent_id=root["id"]) == [sub["id"]]
    assert await ids(parent_id="none") == [other["id"], root["id"]]
    assert await ids(q="roll out") == [sub["id"]]
    assert await ids(tag="ops", status="done") == [other["id"]]
    total = (await served.client.get("/api/tasks", params={"tag": "ops", "limit": 1})).json()
    assert total["total"] == 2


async def test_complete_needs_every_dependency_done(served: Served) -> None:
    task = await served.create(title="ship")
    dep = await served.create(title="test")
    added = await served.client.post(
        f"/api/tasks/{task['id']}/dependencies", json={"depends_on": dep["id"]}
    )
    assert added.status_code == 201 and added.json()["depends_on"] == [dep["id"]]
    refused = await served.client.post(f"/api/tasks/{task['id']}/complete")
    assert refused.status_code == 409
    assert str(dep["id"]) in refused.json()["error"]["message"]
    assert (await served.client.post(f"/api/tasks/{dep['id']}/complete")).status_code == 200
    done = await served.client.post(f"/api/tasks/{task['id']}/complete")
    assert done.status_code == 200
    assert done.json()["status"] == "done" and done.json()["completed_at"] is not None
    again = await served.client.post(f"/api/tasks/{task['id']}/complete")
    assert again.json()["completed_at"] == done.json()["completed_at"]


async def test_dependencies_refuse_cycles_and_self_and_remove_only_existing(
    served: Served,
) -> None:
    a, b, c = [await served.create(title=name) for name in "abc"]
    post = served.client.post
    assert (
        await post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": b["id"]})
    ).status_code == 201
    assert (
        await post(f"/api/tasks/{b['id']}/dependencies", json={"depends_on": c["id"]})
    ).status_code == 201
    again = await post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": b["id"]})
    assert again.status_code == 201 and again.json()["depends_on"] == [b["id"]]
    cycle = await post(f"/api/tasks/{c['id']}/dependencies", json={"depends_on": a["id"]})
    assert cycle.status_code == 409 and cycle.json()["error"]["code"] == "conflict"
    itself = await post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": a["id"]})
    assert itself.status_code == 422
    missing = await post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": 999_999})
    assert missing.status_code == 404
    removed = await served.client.delete(f"/api/tasks/{a['id']}/dependencies/{b['id']}")
    assert removed.status_code == 200 and removed.json()["depends_on"] == []
    gone = await served.client.delete(f"/api/tasks/{a['id']}/dependencies/{b['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_tree_nests_children_to_the_depth_asked(served: Served) -> None:
    root = await served.create(title="root")
    parent = root
    for depth in range(1, 4):
        parent = (
            await served.client.post(
                f"/api/tasks/{parent['id']}/subtasks", json={"title": f"d{depth}"}
            )
        ).json()
        assert parent["parent_id"] is not None
    await served.client.post(f"/api/tasks/{root['id']}/subtasks", json={"title": "sibling"})
    tree = (await served.client.get(f"/api/tasks/{root['id']}/tree")).json()
    assert [child["title"] for child in tree["children"]] == ["d1", "sibling"]
    assert tree["children"][0]["children"][0]["children"][0]["title"] == "d3"
    shallow = (
        await served.client.get(f"/api/tasks/{root['id']}/tree", params={"max_depth": 1})
    ).json()
    assert [child["children"] for child in shallow["children"]] == [[], []]


async def test_ready_lists_todo_tasks_whose_dependencies_are_done_by_priority(
    served: Served,
) -> None:
    low = await served.create(title="low", priority="low")
    urgent = await served.create(title="urgent", priority="urgent")
    blocked = await served.create(title="waits")
    await served.create(title="started", status="in_progress")
    await served.client.post(
        f"/api/tasks/{blocked['id']}/dependencies", json={"depends_on": low["id"]}
    )
    ready = (await served.client.get("/api/tasks/ready")).json()["items"]
    assert [task["id"] for task in ready] == [urgent["id"], low["id"]]
    await served.client.post(f"/api/tasks/{low['id']}/complete")
    ready = (await served.client.get("/api/tasks/ready", params={"limit": 5})).json()["items"]
    assert [task["id"] for task in ready] == [urgent["id"], blocked["id"]]
    one = (await served.client.get("/api/tasks/ready", params={"limit": 1})).json()["items"]
    assert len(one) == 1


async def test_comments_are_added_and_listed_in_order(served: Served) -> None:
    task = await served.create()
    first = await served.client.post(f"/api/tasks/{task['id']}/comments", json={"body": "one"})
    assert first.status_code == 201
    assert first.json()["author"] == "assistant" and first.json()["task_id"] == task["id"]
    await served.client.post(
        f"/api/tasks/{task['id']}/comments", json={"body": "two", "author": "ana"}
    )
    items = (await served.client.get(f"/api/tasks/{task['id']}/comments")).json()["items"]
    assert [(c["body"], c["author"]) for c in items] == [("one", "assistant"), ("two", "ana")]


async def test_search_finds_text_in_title_description_tags_and_comments(served: Served) -> None:
    by_title = await served.create(title="Find the NEEDLE")
    by_description = await served.create(title="x", description="a needle here")
    by_tag = await served.create(title="y", tags=["needles"])
    by_comment = await served.create(title="z")
    await served.create(title="nothing")
    await served.client.post(f"/api/tasks/{by_comment['id']}/comments", json={"body": "Needle!"})
    found = (await served.client.get("/api/search", params={"q": "needle"})).json()["items"]
    expected = [by_comment, by_tag, by_description, by_title]
    assert [task["id"] for task in found] == [task["id"] for task in expected]
    limited = (await served.client.get("/api/search", params={"q": "needle", "limit": 2})).json()
    assert len(limited["items"]) == 2


async def test_search_and_q_take_like_wildcards_literally(served: Served) -> None:
    percent = await served.create(title="100% done")
    await served.create(title="1000 done")
    under = await served.create(title="a_b")
    await served.create(title="axb")
    assert [
        t["id"]
        for t in (await served.client.get("/api/search", params={"q": "100%"})).json()["items"]
    ] == [percent["id"]]
    assert [
        t["id"]
        for t in (await served.client.get("/api/tasks", params={"q": "a_b"})).json()["items"]
    ] == [under["id"]]
    assert (await served.client.get("/api/search", params={"q": "\\"})).json()["items"] == []


async def test_stats_count_statuses_priorities_ready_dependencies_and_comments(
    served: Served,
) -> None:
    empty = (await served.client.get("/api/stats")).json()
    assert empty["total"] == 0 and set(empty["by_status"].values()) == {0}
    a = await served.create(priority="high")
    b = await served.create(status="done")
    await served.create(status="blocked", priority="low")
    await served.client.post(f"/api/tasks/{a['id']}/dependencies", json={"depends_on": b["id"]})
    await served.client.post(f"/api/tasks/{a['id']}/comments", json={"body": "c"})
    stats = (await served.client.get("/api/stats")).json()
    assert stats["total"] == 3
    assert stats["by_status"] == {
        "todo": 1,
        "in_progress": 0,
        "blocked": 1,
        "done": 1,
        "cancelled": 0,
    }
    assert stats["by_priority"] == {"low": 1, "normal": 1, "high": 1, "urgent": 0}
    assert (stats["ready"], stats["with_dependencies"], stats["comments"]) == (1, 1, 1)


async def test_health_and_pool_routes_answer(served: Served) -> None:
    health = await served.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"] == served.target.backend
    assert body["pool"]["max"] == 8 and body["pool"]["min"] == 2
    metrics = (await served.client.get("/api/pool/metrics")).json()
    assert set(metrics) == {
        "active", "idle", "max", "min", "acquisitions", "failed_acquisitions",
        "wait_ms_avg", "wait_ms_max", "slow_queries", "queries", "slow_query_ms",
    }  # fmt: skip
    assert metrics["slow_query_ms"] == 100
    pool_health = (await served.client.get("/api/pool/health")).json()
    assert pool_health["status"] == "healthy" and pool_health["recommendations"] == []


async def test_sql_text_in_values_is_stored_literally(served: Served) -> None:
    hostile = "x'); DROP TABLE tasks; -- \" OR 1=1 /* %_ */"
    task = await served.create(title=hostile, description=hostile, tags=[hostile[:50]])
    fetched = (await served.client.get(f"/api/tasks/{task['id']}")).json()
    assert fetched["title"] == hostile.strip() and fetched["description"] == hostile
    found = (await served.client.get("/api/search", params={"q": "drop table"})).json()
    assert [t["id"] for t in found["items"]] == [task["id"]]
    assert (await served.client.get("/api/tasks", params={"tag": hostile[:50].strip()})).json()[
        "total"
    ] == 1
