"""The gateway's task table: where a task lives, whose it is, and that it stays bounded."""

from __future__ import annotations

from roundhouse.gateway.tasks import ANONYMOUS, TaskTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_learnt_task_routes_to_its_instance_for_its_owner_only() -> None:
    table = TaskTable()
    table.learn({"taskId": "t1", "ttl": 60000}, "srv", "srv-0", "session-a")
    found = table.route("t1", "session-a")
    assert found is not None and (found.slug, found.instance) == ("srv", "srv-0")
    assert table.route("t1", "session-b") is None
    assert table.route("t1", ANONYMOUS) is None
    assert table.route("t1", "session-a", slug="other") is None
    assert table.route("t1", "session-a", slug="srv") is found


def test_tasks_expire_with_their_ttl_capped_and_defaulted() -> None:
    clock = Clock()
    table = TaskTable(clock=clock)
    table.learn({"taskId": "short", "ttl": 1000}, "s", "s-0", "o")
    table.learn({"taskId": "default"}, "s", "s-0", "o")
    table.learn({"taskId": "huge", "ttl": 10**15}, "s", "s-0", "o")
    clock.now += 2
    assert table.route("short", "o") is None
    assert table.route("default", "o") is not None
    clock.now += 3600
    assert table.route("default", "o") is None
    assert table.route("huge", "o") is not None
    clock.now += 86400
    assert table.owned("o") == {}
    assert len(table) == 0


def test_the_table_is_bounded_oldest_first() -> None:
    table = TaskTable(max_entries=3)
    for n in range(5):
        table.learn({"taskId": f"t{n}"}, "s", "s-0", "o")
    assert sorted(table.owned("o")) == ["t2", "t3", "t4"]


def test_malformed_tasks_are_ignored() -> None:
    table = TaskTable()
    for task in (None, "t", [], {}, {"taskId": 5}, {"taskId": ""}, {"taskId": "x" * 257}):
        table.learn(task, "s", "s-0", "o")
    table.learn({"taskId": "ok", "ttl": "soon"}, "s", "s-0", "o")
    table.learn({"taskId": "ok2", "ttl": True}, "s", "s-0", "o")
    table.learn({"taskId": "ok3", "ttl": -5}, "s", "s-0", "o")
    assert sorted(table.owned("o")) == ["ok", "ok2", "ok3"]
    for bad_id in (None, 5, ["ok"], {"ok": 1}):
        assert table.route(bad_id, "o") is None


def test_owned_filters_by_server_and_groups_instances() -> None:
    table = TaskTable()
    table.learn({"taskId": "a"}, "one", "one-0", "o")
    table.learn({"taskId": "b"}, "one", "one-0", "o")
    table.learn({"taskId": "c"}, "two", "two-1", "o")
    table.learn({"taskId": "d"}, "two", "two-1", "someone else")
    assert sorted(table.owned("o", "two")) == ["c"]
    assert list(table.instances(table.owned("o"))) == [("one", "one-0"), ("two", "two-1")]
