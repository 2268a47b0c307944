"""One listening socket per worker, so the kernel spreads connections evenly.

`bentoml serve` hands every worker process the same listening socket. Each
worker's event loop accepts until the queue is empty, so whichever worker
wakes first takes a whole burst: 32 connections opened at once (a client's
connection pool, a load balancer, `wrk`) were seen spread 32/0, 30/2 and 24/8
over two workers, and one core then did the work of two.

With ``serving.socket_per_worker`` (the default), the first worker keeps the
shared socket and every other worker listens on a socket of its own on the
same address, all marked SO_REUSEPORT: Linux then hands each new connection
to one socket of the group by a hash of its addresses, so the workers get
even shares and none accepts another's. The shared socket is marked too,
which only lets the others join it. Where any step is not possible (one
worker, no SO_REUSEPORT, a socket that is not BentoML's), the worker keeps the
shared socket and says why in ``GET /metadata``.

What this costs when a worker exits: connections waiting in its own queue,
not yet accepted, are reset (Linux hands them to another socket of the group
only with ``net.ipv4.tcp_migrate_req=1``); new ones go to the sockets that
remain. The first worker's socket stays open in BentoML's supervisor, so
while that worker restarts (a second or two) its share waits in the queue,
where on a shared socket another worker would have taken it.
"""

from __future__ import annotations

import os
import socket
import sys


def worker_option(argv: list[str], flag: str) -> int | None:
    """A number `bentoml serve` passes its worker processes on their command
    line (``--fd N``: the listening socket, ``--backlog N``), if this process
    is such a worker."""
    for name, value in zip(argv, argv[1:]):
        if name == flag and value.isdigit():
            return int(value)
    return None


def _join_group(fd: int) -> socket.socket:
    """A handle on the inherited listening socket, marked SO_REUSEPORT (the
    mark is on the socket, so it holds for every process sharing it)."""
    shared = socket.socket(fileno=os.dup(fd))
    if not shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        shared.close()
        raise OSError(f"descriptor {fd} is not a listening socket")
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return shared


def listen_on_own_socket(fd: int, backlog: int) -> None:
    """Replace descriptor `fd` (the shared listening socket) in this process
    by a new socket listening on the same address, in its SO_REUSEPORT group."""
    shared = _join_group(fd)
    try:
        own = socket.socket(shared.family, shared.type)
        try:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if shared.family == socket.AF_INET6:
                v6only = shared.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                own.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            own.bind(shared.getsockname())
            own.listen(backlog)
            os.dup2(own.fileno(), fd, inheritable=False)
        finally:
            own.close()
    finally:
        shared.close()


def spread_connections(worker_index: int | None, workers: int, enabled: bool, argv: list[str] | None = None) -> str:
    """Set up this worker's listening socket; say what it listens on (for /metadata).

    Runs before the server starts accepting (BentoML creates the service in
    its lifespan startup, before uvicorn listens on the descriptor)."""
    if not enabled:
        return "the socket shared by all workers (serving.socket_per_worker is off)"
    argv = sys.argv if argv is None else argv
    fd = worker_option(argv, "--fd")
    if fd is None or worker_index is None:
        return "its own server's socket (not a worker of `bentoml serve`)"
    if workers < 2:
        return "the shared socket (one worker)"
    if not hasattr(socket, "SO_REUSEPORT"):
        return "the socket shared by all workers (this system has no SO_REUSEPORT)"
    try:
        if worker_index == 1:
            _join_group(fd).close()
            return "the shared socket, in a SO_REUSEPORT group with one socket per other worker"
        listen_on_own_socket(fd, worker_option(argv, "--backlog") or socket.SOMAXCONN)
    except OSError as error:
        return f"the socket shared by all workers (a socket of its own failed: {error})"
    return "a socket of its own, in a SO_REUSEPORT group with the other workers'"
