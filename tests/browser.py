"""Screenshots (and the visible text) of HTML pages in a real headless Chromium, for tests.

The machines reach no browser CDN, so the browser comes from the npm registry:
@sparticuz/chromium ships a brotli-compressed Chromium (a headless shell), with
its NSS libraries and a font, inside its tarball. `tests/browser/package-lock.json`
pins it; the first use runs `npm ci` and unpacks it into `tests/browser/.chromium/`
(both ignored by git), under a file lock so that pytest-xdist workers don't race.
Nothing comes from apt: Chromium loads the bundled NSS and sees only the bundled
font, so a page renders the same on every machine.

The page is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`)
rather than with `--screenshot`: this build's `--screenshot` and `--dump-dom`
never return here.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent / "browser"
PACKAGE = HERE / "node_modules" / "@sparticuz" / "chromium"
CACHE = HERE / ".chromium"
LOCK = HERE / ".install.lock"
INSTALL_TIMEOUT = 600
SCREENSHOT_TIMEOUT = 60
# The background-networking flags: otherwise Chromium calls Google's hosts at
# start, which this machine's closed network refuses.
FLAGS = [
    "--headless=shell",
    "--no-sandbox",  # the tests run as root
    "--no-zygote",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--mute-audio",
    "--hide-scrollbars",
    "--font-render-hinting=none",
    "--remote-debugging-pipe",
]


class BrowserError(RuntimeError):
    """The browser could not be installed, started, or take the screenshot."""


def _pinned_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text())
    return lock["packages"]["node_modules/@sparticuz/chromium"]["version"]


def _home() -> Path:
    return CACHE / _pinned_version()


def _ready(home: Path) -> bool:
    return (home / ".complete").is_file()


@contextmanager
def _locked():
    HERE.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], timeout: float, what: str, **kwargs) -> None:
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as error:
        raise BrowserError(f"{what} took over {timeout:.0f}s: {' '.join(command)}") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout or b"").decode(errors="replace")[-2000:]
        raise BrowserError(f"{what} failed ({result.returncode}): {' '.join(command)}\n{tail}")


def _unbrotli(source: Path, target: Path) -> None:
    """Node's zlib decompresses brotli; the .venv has no brotli module."""
    script = (
        "const fs=require('fs'),z=require('zlib'),{pipeline}=require('stream');"
        "pipeline(fs.createReadStream(process.argv[1]),z.createBrotliDecompress(),"
        "fs.createWriteStream(process.argv[2]),e=>{if(e){console.error(e);process.exit(1)}})"
    )
    _run(["node", "-e", script, str(source), str(target)], INSTALL_TIMEOUT, f"decompressing {source.name}")


def _install(home: Path) -> None:
    version = _pinned_version()
    installed = PACKAGE / "package.json"
    if not installed.is_file() or json.loads(installed.read_text()).get("version") != version:
        # --ignore-scripts: none of its JavaScript runs (we unpack its bin/ ourselves),
        # so its `engines: node >= 22` does not matter on node 20.
        npm = ["npm", "ci", "--prefix", str(HERE), "--ignore-scripts", "--engine-strict=false",
               "--no-audit", "--no-fund", "--loglevel=error"]
        _run(npm, INSTALL_TIMEOUT, "npm ci")
    bin_ = PACKAGE / "bin"
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=CACHE))
    try:
        _unbrotli(bin_ / "chromium.br", staging / "chromium")
        (staging / "chromium").chmod(0o755)
        # al2023: NSS and expat, so Debian's libnss3 is not needed;
        # swiftshader: libGLESv2/libEGL, which Chromium looks for beside itself.
        for name, into in (("al2023", staging), ("swiftshader", staging), ("fonts", staging)):
            tar = staging / f"{name}.tar"
            _unbrotli(bin_ / f"{name}.tar.br", tar)
            with tarfile.open(tar) as archive:
                archive.extractall(into, filter="data")
            tar.unlink()
        # Only the bundled font (Open Sans), whatever the machine has installed.
        (staging / "fonts.conf").write_text(
            '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
            f"  <dir>{home / 'fonts'}</dir>\n  <cachedir>{home / 'fontconfig-cache'}</cachedir>\n"
            "</fontconfig>\n"
        )
        (staging / ".complete").write_text(version + "\n")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install() -> Path:
    """Chromium's folder, installing it first if missing (idempotent, locked)."""
    home = _home()
    if _ready(home):
        return home
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise BrowserError(f"`{tool}` is not on PATH: it installs the browser from the npm registry")
    with _locked():
        if not _ready(home):
            CACHE.mkdir(parents=True, exist_ok=True)
            _install(home)
    return home


def browser_available() -> str:
    """"" when a screenshot can be taken, else why not (for pytest.skip). Installs on first call."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"the bundled Chromium is for Linux x86_64, not {platform.system()} {platform.machine()}"
    try:
        install()
    except (BrowserError, OSError) as error:
        return f"headless Chromium could not be installed: {error}"
    return ""


class _Pipe:
    """DevTools protocol over the pipe: JSON messages ending in NUL."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _receive(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise BrowserError("the browser did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed its pipe (it exited)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            self.events.append(self._receive())


def _url(page: Path | str) -> str:
    if isinstance(page, str) and "://" in page:
        return page
    path = Path(page).resolve()
    if not path.is_file():
        raise BrowserError(f"no such page: {path}")
    return path.as_uri()


@contextmanager
def _page(page: Path | str, width: int, height: int, wait_ms: int):
    """A started Chromium with `page` loaded (plus `wait_ms` for scripts to render): (pipe, session)."""
    url = _url(page)
    home = install()
    deadline = time.monotonic() + SCREENSHOT_TIMEOUT + wait_ms / 1000
    with tempfile.TemporaryDirectory(prefix="lockgate-chromium-") as scratch:
        env = {
            **os.environ,
            "HOME": scratch,  # it writes ~/.pki and caches; keep them out of the real home
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(home / "lib"), os.environ.get("LD_LIBRARY_PATH")])),
            "FONTCONFIG_FILE": str(home / "fonts.conf"),
        }
        log = Path(scratch) / "chromium.log"
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def child_fds() -> None:  # the protocol pipe must be fds 3 and 4 in Chromium
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        command = [
            str(home / "chromium"),
            *FLAGS,
            f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                close_fds=False,
                preexec_fn=child_fds,
                start_new_session=True,  # so that its helper processes are killed with it
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            pipe = _Pipe(to_browser_w, from_browser_r, deadline)
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            pipe.call("Page.enable", session=session)
            pipe.call("Runtime.enable", session=session)
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            navigation = pipe.call("Page.navigate", {"url": url}, session=session)
            if navigation.get("errorText"):
                raise BrowserError(f"loading {url}: {navigation['errorText']}")
            pipe.wait_for("Page.loadEventFired")
            if wait_ms:
                time.sleep(wait_ms / 1000)
            pipe.call("Runtime.evaluate", {"expression": "document.fonts.ready", "awaitPromise": True}, session=session)
            yield pipe, session
        except BrowserError as error:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BrowserError(f"rendering {url} failed: {error}\n{' '.join(command)}\n{tail}") from error
        finally:
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)


def screenshot(html: Path | str, png: Path, width: int = 1200, height: int = 1600, wait_ms: int = 0) -> Path:
    """Render `html` (a file, or a URL such as http://127.0.0.1:PORT/...) in headless Chromium
    and write a `width` x `height` PNG of the viewport to `png`.

    `wait_ms`: extra time after the load event, for pages that render with scripts.
    Raises BrowserError, with the browser's last output, when anything fails.
    """
    png = Path(png)
    with _page(html, width, height, wait_ms) as (pipe, session):
        shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(base64.b64decode(shot["data"]))
    return png


def rendered_text(page: Path | str, wait_ms: int = 0, width: int = 1200, height: int = 1600) -> str:
    """The page's visible text as the browser lays it out (`document.body.innerText`)."""
    with _page(page, width, height, wait_ms) as (pipe, session):
        result = pipe.call(
            "Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''", "returnByValue": True},
            session=session,
        )
    return result["result"].get("value", "")
