"""The port allocator on real sockets: ranges, foreign listeners, leftovers of stopped servers.

Each test takes its own slice of a window of free ports picked at random per test process, so
that a second run of this file at the same time does not meet this one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from roundhouse.control.runtimes.ports import PortAllocator, port_is_free
from roundhouse.errors import Conflict
from tests.portwindow import free_window

#: This process's window: each test takes its own slice (BASE + offset).
BASE = free_window(40)


@contextmanager
def listener(port: int, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A foreign program listening on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        yield sock


def leave_connection_behind(port: int) -> socket.socket:
    """What a stopped HTTP server leaves: its side of a keep-alive connection, closed first by
    the server, in FIN_WAIT_2 and then TIME_WAIT, while nothing listens any more. Returns the
    client's end (close it to move the server's end on to TIME_WAIT)."""
    with listener(port) as server:
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()
    return client


def test_ports_come_from_the_range_in_order_and_never_twice():
    allocator = PortAllocator(BASE, BASE + 4)
    ports = [allocator.allocate() for _ in range(5)]
    assert ports == [BASE, BASE + 1, BASE + 2, BASE + 3, BASE + 4]
    assert allocator.taken == frozenset(ports)


def test_an_exhausted_range_raises_a_conflict_that_names_the_range():
    allocator = PortAllocator(BASE + 5, BASE + 6)
    allocator.allocate()
    allocator.allocate()
    with pytest.raises(Conflict, match=f"no free port left in {BASE + 5}-{BASE + 6}"):
        allocator.allocate()


def test_a_released_port_is_the_last_to_be_handed_out_again():
    allocator = PortAllocator(BASE + 7, BASE + 9)
    first = allocator.allocate()
    allocator.release(first)
    assert allocator.allocate() == BASE + 8
    assert allocator.allocate() == BASE + 9
    assert allocator.allocate() == first


def test_releasing_none_or_a_port_not_held_is_harmless():
    allocator = PortAllocator(BASE + 10, BASE + 10)
    allocator.release(None)
    allocator.release(BASE + 10)
    assert allocator.allocate() == BASE + 10


@pytest.mark.parametrize(("low", "high"), [(BASE + 11, BASE + 10), (0, 10), (65535, 65536)])
def test_an_inverted_or_impossible_range_is_refused(low: int, high: int):
    with pytest.raises(ValueError, match="inverted or outside"):
        PortAllocator(low, high)


def test_a_port_a_foreign_program_listens_on_is_skipped():
    allocator = PortAllocator(BASE + 11, BASE + 13)
    with listener(BASE + 11):
        assert not port_is_free(BASE + 11)
        assert allocator.allocate() == BASE + 12


def test_a_foreign_listener_on_another_local_address_makes_the_port_taken():
    # A server we launch may bind the wildcard; a listener on 127.0.0.2 would stop it.
    with listener(BASE + 14, host="127.0.0.2"):
        assert not port_is_free(BASE + 14)


def test_a_range_where_every_free_port_has_a_listener_is_exhausted():
    allocator = PortAllocator(BASE + 15, BASE + 16)
    allocator.allocate()
    with listener(BASE + 16), pytest.raises(Conflict, match="1 in use by other processes"):
        allocator.allocate()


def test_a_released_port_its_old_server_still_listens_on_is_skipped():
    allocator = PortAllocator(BASE + 17, BASE + 18)
    port = allocator.allocate()
    with listener(port):  # the old server has not let go yet
        allocator.release(port)
        assert allocator.allocate() == BASE + 18
        allocator.release(BASE + 18)
        with pytest.raises(Conflict):
            # Only the old server's port is left: it is not handed out while it listens.
            PortAllocator(port, port).allocate()
    assert PortAllocator(port, port).allocate() == port


def test_connections_left_in_time_wait_by_a_stopped_server_do_not_make_its_port_taken():
    port = BASE + 19
    client = leave_connection_behind(port)
    client.close()
    # The next server binds with SO_REUSEADDR, as http.server and uvicorn do, and succeeds.
    assert port_is_free(port)
    assert PortAllocator(port, port).allocate() == port
    with listener(port):
        pass


def test_a_port_without_leftovers_is_preferred_to_one_in_time_wait():
    client = leave_connection_behind(BASE + 20)
    try:
        allocator = PortAllocator(BASE + 20, BASE + 21)
        assert allocator.allocate() == BASE + 21
        assert allocator.allocate() == BASE + 20
    finally:
        client.close()


class AllocatorMachine(RuleBasedStateMachine):
    """Random deploys (allocate), stops (release) and foreign listeners coming and going.

    Whatever the order: no port is held by two live holders, every port is in range, and no
    port is handed out while a foreign program listens on it.
    """

    LOW, HIGH = BASE + 30, BASE + 37
    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.allocator = PortAllocator(self.LOW, self.HIGH)
        self.live: list[int] = []
        self.foreign: dict[int, socket.socket] = {}

    @rule(target=held)
    def deploy(self) -> int | None:
        try:
            port = self.allocator.allocate()
        except Conflict:
            assert len(self.live) + len(self.foreign) == self.HIGH - self.LOW + 1
            return None
        assert self.LOW <= port <= self.HIGH
        assert port not in self.live, f"port {port} handed out twice"
        assert port not in self.foreign, f"port {port} handed out under a foreign listener"
        self.live.append(port)
        return port

    @rule(port=consumes(held))
    def stop(self, port: int | None) -> None:
        if port is not None:
            self.live.remove(port)
            self.allocator.release(port)

    @precondition(lambda self: len(self.foreign) < 3)
    @rule(port=st.integers(min_value=LOW, max_value=HIGH))
    def a_foreign_program_starts_listening(self, port: int) -> None:
        if port in self.live or port in self.foreign:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        self.foreign[port] = sock

    @precondition(lambda self: bool(self.foreign))
    @rule(data=st.data())
    def a_foreign_program_stops_listening(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.foreign)))
        self.foreign.pop(port).close()

    @invariant()
    def the_allocator_holds_exactly_the_live_ports(self) -> None:
        assert self.allocator.taken == frozenset(self.live)
        assert len(set(self.live)) == len(self.live)

    def teardown(self) -> None:
        for sock in self.foreign.values():
            sock.close()


AllocatorMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=100, deadline=None
)
test_no_port_is_ever_held_twice_over_random_deploys_and_stops = AllocatorMachine.TestCase
