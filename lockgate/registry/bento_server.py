"""Start and stop `bentoml serve` as a child process, on a free loopback port.

Used where a Bento must be served as users will serve it: the packaging
step's check, the serving benchmark and the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


class ServerFailed(RuntimeError):
    """`bentoml serve` exited before it became ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    target: str, env: dict[str, str], log: IO[bytes], timeout: float = 180.0, cwd: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """Serve `target` (a Bento tag or `module:Service`); return (process, base URL) once /readyz says so."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("bentoml")), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    return start_command(command, port, env, log, timeout, cwd, name=f"bentoml serve {target}")


def start_command(
    command: list[str], port: int, env: dict[str, str], log: IO[bytes], timeout: float = 180.0,
    cwd: Path | None = None, name: str = "",
) -> tuple[subprocess.Popen, str]:
    """Run a command that serves on 127.0.0.1:`port` (`bentoml serve`, or
    `lockgate serve`, which becomes it); return (process, base URL) once
    /readyz says so."""
    # deferred: the HTTP client loads only where a served model is called
    import httpx

    target = name or " ".join(command[:3])
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"{target} exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(process)
    raise TimeoutError(f"{target} was not ready within {timeout:.0f}s:\n{_tail(log)}")


def stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to the whole process group (graceful shutdown), SIGKILL after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(log: IO[bytes]) -> str:
    try:
        log.flush()
        log.seek(0)
        return log.read().decode(errors="replace")[-2000:]
    except (AttributeError, OSError, ValueError):  # not a readable file
        return ""
