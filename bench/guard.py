"""What does ``Guard.run`` add to a call? Microseconds per call, against a bare ``await fn()``.

    .venv/bin/python bench/guard.py [--calls N]

Cases: a cache hit; a read through a closed breaker (no cache); a read that misses the cache and
stores its answer; a mutation that empties the cache. ``fn`` is a coroutine that returns at
once, so the figures are the toolkit's own cost on this machine (one event loop, one thread).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from roundhouse.resilience import CircuitBreaker, Guard, ResponseCache

ARGS = {"task_id": 42, "filters": {"status": "todo", "tag": "x"}}


async def answer() -> dict[str, Any]:
    return {"id": 42}


async def timed(calls: int, step: Callable[[int], Awaitable[Any]]) -> float:
    for i in range(min(calls, 1000)):  # warm-up
        await step(i)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(calls):
            await step(i)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


async def main(calls: int) -> None:
    plain = Guard(CircuitBreaker("plain"))
    cached = Guard(CircuitBreaker("cached"), cache=ResponseCache())

    async def bare(i: int) -> Any:
        return await answer()

    async def hit(i: int) -> Any:
        return await cached.run("get_task", ARGS, answer, idempotent=True, mutation=False)

    async def closed(i: int) -> Any:
        return await plain.run("get_task", ARGS, answer, idempotent=True, mutation=False)

    fresh = iter(range(1 << 62))

    async def miss(i: int) -> Any:  # a key never seen: a miss, a store, an LRU eviction
        arguments = {"task_id": next(fresh)}
        return await cached.run("get_task", arguments, answer, idempotent=True, mutation=False)

    async def mutation(i: int) -> Any:
        return await cached.run("update_task", ARGS, answer, idempotent=True, mutation=True)

    base = await timed(calls, bare)
    print(f"bare await fn():                 {base:6.2f} us/call")
    for name, step in [
        ("cache hit", hit),
        ("closed breaker, no cache", closed),
        ("cache miss + store", miss),
        ("mutation + invalidate", mutation),
    ]:
        cost = await timed(calls, step)
        print(f"{name + ':':32} {cost:6.2f} us/call  (+{cost - base:.2f} over bare)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().calls))
