"""The connection pool: its policy (warm minimum, maximum, acquire timeout, idle timeout,
lifetime, broken connections), and its figures as the backend reports them."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from roundhouse.bindery.backend import PoolLimits
from roundhouse.bindery.backend.errors import Unavailable
from roundhouse.bindery.backend.pool import Pool
from tests.integration.bindery.conftest import Served, Target, served_with


class CountingConnector:
    """Connections are numbers; the connector remembers what it opened and closed."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.refuse = False

    async def connect(self) -> int:
        if self.refuse:
            raise ConnectionError("refused")
        number = next(self.numbers)
        self.opened.append(number)
        return number

    async def close(self, connection: int) -> None:
        self.closed.append(connection)


async def test_a_pool_opens_its_minimum_at_start_and_reuses_the_warmest() -> None:
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=3, min_size=2))
    await pool.open()
    try:
        assert connector.opened == [1, 2] and pool.metrics()["idle"] == 2
        async with pool.lease() as first:
            assert pool.metrics()["active"] == 1
        async with pool.lease() as again:
            assert again.connection == first.connection
        assert pool.metrics()["acquisitions"] == 2 and connector.opened == [1, 2]
    finally:
        await pool.close()
    assert sorted(connector.closed) == [1, 2]


async def test_a_full_pool_makes_the_next_caller_wait_then_fail() -> None:
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=2, min_size=0, acquire_timeout=0.1))
    await pool.open()
    async with pool.lease(), pool.lease():
        with pytest.raises(Unavailable):
            async with pool.lease():
                pass
        figures = pool.metrics()
        assert (figures["active"], figures["failed_acquisitions"]) == (2, 1)

    async def hold_briefly() -> None:
        async with pool.lease():
            await asyncio.sleep(0.02)

    async with pool.lease():
        await asyncio.gather(hold_briefly(), hold_briefly())  # waits, within the timeout
    assert pool.metrics()["failed_acquisitions"] == 1
    assert pool.metrics()["wait_ms_max"] >= 10
    await pool.close()


async def test_idle_and_old_connections_are_replaced_when_handed_out() -> None:
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=2, min_size=1, idle_timeout=0.05))
    await pool.open()
    await asyncio.sleep(0.1)
    async with pool.lease() as lease:
        assert lease.connection == 2 and connector.closed == [1]
    await pool.close()
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=2, min_size=1, lifetime=0.05))
    await pool.open()
    async with pool.lease() as lease:
        await asyncio.sleep(0.1)
    assert connector.closed == [1]  # too old to go back
    await pool.close()


async def test_a_lease_ended_by_an_error_closes_its_connection() -> None:
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=2, min_size=1))
    await pool.open()
    with pytest.raises(OSError):
        async with pool.lease():
            raise OSError("the socket broke")
    assert connector.closed == [1] and pool.metrics()["idle"] == 0
    with pytest.raises(Unavailable):
        async with pool.lease():
            raise Unavailable("an answer, not a broken connection")
    assert connector.closed == [1] and pool.metrics()["idle"] == 1
    await pool.close()


async def test_the_reaper_closes_expired_connections_and_keeps_the_minimum() -> None:
    connector = CountingConnector()
    pool = Pool(connector, PoolLimits(max_size=4, min_size=2, idle_timeout=0.05))
    await pool.open()
    async with pool.lease(), pool.lease(), pool.lease():
        pass
    assert pool.metrics()["idle"] == 3
    await asyncio.sleep(0.1)
    await pool.reap()
    assert pool.metrics()["idle"] == 2 and len(connector.closed) == 3
    connector.refuse = True
    with pytest.raises(Unavailable):
        async with pool.lease(), pool.lease(), pool.lease():
            pass
    assert pool.metrics()["failed_acquisitions"] == 1
    await pool.close()


async def test_every_request_counts_one_acquisition_and_its_queries(served: Served) -> None:
    task = await served.create()
    before = (await served.client.get("/api/pool/metrics")).json()
    for _ in range(5):
        assert (await served.client.get(f"/api/tasks/{task['id']}")).status_code == 200
    after = (await served.client.get("/api/pool/metrics")).json()
    assert after["acquisitions"] - before["acquisitions"] == 5
    assert after["queries"] - before["queries"] == 5  # a task and its dependencies: one query
    assert after["failed_acquisitions"] == 0 and after["active"] == 0


async def test_an_exhausted_pool_answers_503_and_says_so_in_its_health(target: Target) -> None:
    limits = PoolLimits(max_size=1, min_size=1, acquire_timeout=0.2)
    async with served_with(target, limits) as served:
        task = await served.create()
        before = await served.dump()
        async with served.bindery.database.pool.lease():
            refused = await served.client.post("/api/tasks", json={"title": "waits"})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "unavailable"
            health = await served.client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            pool_health = (await served.client.get("/api/pool/health")).json()
            assert pool_health["status"] == "critical" and pool_health["utilization"] == 1.0
            assert len(pool_health["recommendations"]) == 2
            rpc = await served.rpc("get_task", {"task_id": task["id"]})
            assert rpc["error"]["code"] == -32003
        assert await served.dump() == before
        metrics = (await served.client.get("/api/pool/metrics")).json()
        assert metrics["failed_acquisitions"] == 3
        assert (await served.client.get(f"/api/tasks/{task['id']}")).status_code == 200


async def test_slow_queries_are_counted_against_the_threshold(target: Target) -> None:
    async with served_with(target, PoolLimits(slow_query_ms=0)) as served:
        await served.create()
        metrics = (await served.client.get("/api/pool/metrics")).json()
        assert metrics["slow_queries"] == metrics["queries"] > 0
        health = (await served.client.get("/api/pool/health")).json()
        assert health["status"] == "warning" and health["slow_query_rate"] == 1.0


@pytest.mark.postgres
async def test_connections_the_server_dropped_are_replaced(store_postgres_url: str) -> None:
    import uuid

    import asyncpg

    schema = f"bindery_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(store_postgres_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        target = Target("postgresql", f"{store_postgres_url}?search_path={schema}")
        async with served_with(target) as served:
            task = await served.create()
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%' "
                "AND datname = current_database() AND backend_type = 'client backend' "
                "AND application_name = ''"
            )
            statuses = [
                (await served.client.get(f"/api/tasks/{task['id']}")).status_code for _ in range(4)
            ]
            assert statuses[-1] == 200 and set(statuses) <= {200, 503}
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
