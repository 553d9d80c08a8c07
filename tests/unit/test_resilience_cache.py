"""The response cache: TTL with an injected clock, the LRU bound, keys, the generation check."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from roundhouse.errors import InvalidInput
from roundhouse.resilience import ResponseCache


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_stored_answer_is_returned_until_its_ttl_runs_out() -> None:
    clock = Clock()
    cache = ResponseCache(ttl=300.0, clock=clock)
    cache.put("get_task", {"task_id": 1}, {"id": 1})
    clock.now += 299.999
    assert cache.get("get_task", {"task_id": 1}) == {"id": 1}
    clock.now += 0.001
    assert cache.get("get_task", {"task_id": 1}) is None
    assert len(cache) == 0  # the expired entry was dropped when looked at
    assert cache.snapshot() == {
        "entries": 0,
        "hits": 1,
        "misses": 1,
        "evictions": 0,
        "invalidations": 0,
        "ttl": 300.0,
        "max_entries": 1024,
    }


def test_the_default_ttl_is_five_minutes() -> None:
    assert ResponseCache().ttl == 300.0


def test_a_miss_counts_and_answers_none() -> None:
    cache = ResponseCache(clock=Clock())
    assert cache.get("get_task", {"task_id": 1}) is None
    assert cache.snapshot()["misses"] == 1


def test_entries_are_kept_apart_by_operation_and_by_arguments() -> None:
    cache = ResponseCache(clock=Clock())
    cache.put("get_task", {"task_id": 1}, "one")
    cache.put("get_task", {"task_id": 2}, "two")
    cache.put("get_task_tree", {"task_id": 1}, "tree")
    assert cache.get("get_task", {"task_id": 1}) == "one"
    assert cache.get("get_task", {"task_id": 2}) == "two"
    assert cache.get("get_task_tree", {"task_id": 1}) == "tree"
    assert cache.get("get_task", {"task_id": "1"}) is None
    assert cache.get("get_task", {"task_id": 1, "x": None}) is None


def test_equal_dicts_with_keys_in_a_different_order_share_one_entry() -> None:
    cache = ResponseCache(clock=Clock())
    first = {"filters": {"status": "todo", "tag": "x"}, "limit": 10}
    second = {"limit": 10, "filters": {"tag": "x", "status": "todo"}}
    assert list(first) != list(second)
    assert ResponseCache.key("list_tasks", first) == ResponseCache.key("list_tasks", second)
    cache.put("list_tasks", first, ["a"])
    assert cache.get("list_tasks", second) == ["a"]
    assert cache.get("list_tasks", MappingProxyType(second)) == ["a"]


def test_an_operation_name_cannot_forge_another_operations_key() -> None:
    assert ResponseCache.key('a",{}', {}) != ResponseCache.key("a", {})
    assert ResponseCache.key("a\x00{}", {}) != ResponseCache.key("a", {})


@pytest.mark.parametrize(
    "arguments",
    [{1: "x"}, {"tags": {"a", "b"}}, {"o": object()}, {"n": 1 << 70}],
    ids=["int-key", "set", "object", "huge-int"],
)
def test_arguments_that_are_not_plain_json_are_refused_clearly(arguments: Any) -> None:
    cache = ResponseCache(clock=Clock())
    with pytest.raises(InvalidInput, match="cannot be used as a cache key") as caught:
        cache.put("get_task", arguments, "value")
    assert caught.value.field == "arguments"
    with pytest.raises(InvalidInput):
        cache.get("get_task", arguments)
    assert len(cache) == 0


def test_the_lru_bound_evicts_the_least_recently_used_and_counts_it() -> None:
    cache = ResponseCache(max_entries=3, clock=Clock())
    for i in range(3):
        cache.put("get_task", {"task_id": i}, i)
    assert cache.get("get_task", {"task_id": 0}) == 0  # 0 is now the most recently used
    cache.put("get_task", {"task_id": 3}, 3)  # evicts 1
    assert len(cache) == 3
    assert cache.get("get_task", {"task_id": 1}) is None
    assert [cache.get("get_task", {"task_id": i}) for i in (0, 2, 3)] == [0, 2, 3]
    for i in range(4, 104):
        cache.put("get_task", {"task_id": i}, i)
    assert len(cache) == 3
    assert cache.snapshot()["evictions"] == 101


def test_putting_the_same_key_again_replaces_without_evicting() -> None:
    clock = Clock()
    cache = ResponseCache(ttl=10.0, max_entries=2, clock=clock)
    cache.put("op", {}, "old")
    clock.now += 9.0
    cache.put("op", {}, "new")  # a fresh TTL too
    clock.now += 9.0
    assert cache.get("op", {}) == "new"
    assert len(cache) == 1
    assert cache.snapshot()["evictions"] == 0


def test_none_is_never_stored() -> None:
    cache = ResponseCache(clock=Clock())
    cache.put("op", {}, None)
    assert len(cache) == 0


@pytest.mark.parametrize("ttl", [0.0, -1.0])
def test_a_ttl_of_zero_or_less_disables_the_cache(ttl: float) -> None:
    cache = ResponseCache(ttl=ttl, clock=Clock())
    cache.put("op", {}, "value")
    assert len(cache) == 0
    assert cache.get("op", {}) is None


def test_max_entries_zero_disables_the_cache() -> None:
    cache = ResponseCache(max_entries=0, clock=Clock())
    cache.put("op", {}, "value")
    assert cache.get("op", {}) is None


@pytest.mark.parametrize("kwargs", [{"ttl": float("nan")}, {"max_entries": -1}])
def test_a_cache_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ResponseCache(**kwargs)  # type: ignore[arg-type]


def test_invalidate_all_empties_the_cache_and_moves_the_generation_on() -> None:
    cache = ResponseCache(clock=Clock())
    cache.put("a", {}, 1)
    cache.put("b", {}, 2)
    generation = cache.generation
    cache.invalidate_all()
    assert len(cache) == 0
    assert cache.get("a", {}) is None
    assert cache.generation == generation + 1
    assert cache.snapshot()["invalidations"] == 1


def test_a_read_that_raced_a_write_does_not_put_its_stale_answer_back() -> None:
    cache = ResponseCache(clock=Clock())
    generation = cache.generation  # the read starts
    cache.invalidate_all()  # a write completes meanwhile
    cache.put_if_current(generation, "get_task", {"task_id": 1}, {"title": "old"})
    assert cache.get("get_task", {"task_id": 1}) is None
    current = cache.generation
    cache.put_if_current(current, "get_task", {"task_id": 1}, {"title": "new"})
    assert cache.get("get_task", {"task_id": 1}) == {"title": "new"}
