"""One listening socket per worker (services/listening.py), on real sockets:
a socket shared by two "workers" as `bentoml serve` shares it (bound once,
SO_REUSEADDR only, each worker holding its own descriptor of it)."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack

import pytest

from services.listening import spread_connections, worker_option


@pytest.fixture
def shared():
    """A listening socket made as circus makes BentoML's, and two inherited descriptors of it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    descriptors = [os.dup(sock.fileno()), os.dup(sock.fileno())]
    yield sock, descriptors
    for fd in descriptors:
        os.close(fd)
    sock.close()


def accepted(fd: int) -> int:
    """Connections waiting on descriptor `fd`'s socket, accepted now."""
    sock = socket.socket(fileno=os.dup(fd))
    sock.setblocking(False)
    count = 0
    try:
        while True:
            sock.accept()[0].close()
            count += 1
    except BlockingIOError:
        return count
    finally:
        sock.close()


def argv(fd: int) -> list[str]:
    return ["service.py", "lockgate:v1", "--fd", str(fd), "--service-name", "lockgate", "--backlog", "256"]


def test_the_second_worker_listens_on_its_own_socket_in_the_group(shared):
    sock, (first, second) = shared
    assert "shared socket" in spread_connections(1, 2, True, argv(first))
    assert "of its own" in spread_connections(2, 2, True, argv(second))
    assert os.fstat(first).st_ino == os.fstat(sock.fileno()).st_ino
    assert os.fstat(second).st_ino != os.fstat(sock.fileno()).st_ino
    own = socket.socket(fileno=os.dup(second))
    assert own.getsockname() == sock.getsockname()
    own.close()


def test_connections_opened_at_once_are_spread_over_both_sockets(shared):
    sock, (first, second) = shared
    spread_connections(1, 2, True, argv(first))
    spread_connections(2, 2, True, argv(second))
    with ExitStack() as stack:
        for _ in range(64):
            stack.enter_context(socket.create_connection(sock.getsockname()))
        counts = [accepted(first), accepted(second)]
    assert sum(counts) == 64
    # By a hash of the addresses: 64 connections fall below 13 on one side
    # about once in a million tries; on one shared socket one worker takes all.
    assert min(counts) >= 13, counts


@pytest.mark.parametrize("index, workers, enabled, command, says", [
    (2, 2, False, True, "serving.socket_per_worker is off"),
    (1, 1, True, True, "one worker"),
    (None, 2, True, True, "not a worker of `bentoml serve`"),
    (2, 2, True, False, "not a worker of `bentoml serve`"),
])
def test_otherwise_the_worker_keeps_the_shared_socket(shared, index, workers, enabled, command, says):
    sock, (_, second) = shared
    told = spread_connections(index, workers, enabled, argv(second) if command else ["pytest"])
    assert says in told
    assert os.fstat(second).st_ino == os.fstat(sock.fileno()).st_ino


def test_a_descriptor_that_is_not_a_listening_socket_is_left_alone():
    client = socket.socket()
    told = spread_connections(2, 2, True, argv(client.fileno()))
    assert "failed" in told and "not a listening socket" in told
    client.close()


def test_worker_options_are_read_from_bentoml_s_command_line():
    assert worker_option(argv(7), "--fd") == 7
    assert worker_option(argv(7), "--backlog") == 256
    assert worker_option(["service.py", "--fd"], "--fd") is None
