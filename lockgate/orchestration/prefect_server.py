"""A long-lived local Prefect server for the workspace.

Prefect's temporary server costs every run 20 s or more to start (and once
in a while more than its start-up timeout, failing the run). A server left
up in the workspace costs that once: `lockgate server start` starts it, and
so does the first `lockgate run` when `settings.prefect_server` is "local";
later runs find it through `<home>/prefect-server.json`. Its database lives
in the workspace's Prefect home, so migrations run once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lockgate.core.locks import atomic_write_text, workspace_lock
from lockgate.core.settings import LockgateSettings

STARTUP_TIMEOUT_S = 180.0


class ServerStartFailed(RuntimeError):
    """The local Prefect server did not become healthy in time."""


@dataclass(frozen=True)
class LocalServer:
    url: str  # the API URL clients use (PREFECT_API_URL)
    pid: int
    log: Path


def state_file(settings: LockgateSettings) -> Path:
    return settings.home / "prefect-server.json"


def running_server(settings: LockgateSettings) -> LocalServer | None:
    """The workspace's server, if its record exists and it answers."""
    path = state_file(settings)
    try:
        record = json.loads(path.read_text())
        server = LocalServer(url=record["url"], pid=int(record["pid"]), log=Path(record["log"]))
    except (OSError, ValueError, KeyError):
        return None
    return server if _healthy(server.url) else None


def ensure_server(settings: LockgateSettings, timeout: float = STARTUP_TIMEOUT_S) -> LocalServer:
    """The running server, or a new one started and waited for. Two runs
    starting at once start one server: the second waits for the first."""
    with workspace_lock(settings.home, "prefect-server", timeout=timeout + 30):
        server = running_server(settings)
        if server is not None:
            return server
        return _start(settings, timeout)


def stop_server(settings: LockgateSettings, timeout: float = 30.0) -> bool:
    """Stop the workspace's server; False when none was running."""
    path = state_file(settings)
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return False
    path.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True


def _start(settings: LockgateSettings, timeout: float) -> LocalServer:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "prefect-server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(settings.prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    prefect = str(Path(sys.executable).with_name("prefect"))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this run; stopped with `lockgate server stop`
        )
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if process.poll() is not None:
            raise ServerStartFailed(f"the Prefect server exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGTERM)
            raise ServerStartFailed(f"the Prefect server was not healthy after {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    server = LocalServer(url=url, pid=process.pid, log=log)
    atomic_write_text(state_file(settings), json.dumps({"url": url, "pid": process.pid, "log": str(log)}))
    return server


def _healthy(url: str) -> bool:
    # deferred: the HTTP client loads only where a served model is called
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
