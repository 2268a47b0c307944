"""Serving throughput, latency and cold start on loopback, side by side in one
run, loaded by `wrk` (a compiled load generator; Debian's `wrk` package) on
the same machine:

  - JSON, one example per request, at 1, 8 and 32 connections;
  - binary (`/predict_npy`) batches, against the in-process ceiling of the
    runtime that serves;
  - adaptive batching on and off at 32 connections;
  - the monitor's traffic log on (the default: every request's summary and
    outputs written) and off, at 8 and 32 connections;
  - the same model on the Keras runtime, batching on and off (what batching
    buys where the model, not the edge, is the cost);
  - cold start, from `bentoml serve` to the first answered prediction, and the
    Bento's size;
  - a text model (TF-IDF with logistic regression or an LSTM, as the default
    run chooses, on real product reviews) on the runtime it was packaged
    for (ONNX where parity passed) against the Keras runtime.

    .venv/bin/python bench/serving.py --seconds 8

The digits champion is trained first in a temporary workspace (about a
minute); `--home DIR --bento TAG` reuses one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

KEY = "bench-key"
NPY_BATCH = 64

WRK_SCRIPT = """
wrk.method = os.getenv("LOCKGATE_BENCH_METHOD")
local f = io.open(os.getenv("LOCKGATE_BENCH_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = os.getenv("LOCKGATE_BENCH_TYPE")
wrk.headers["X-API-Key"] = os.getenv("LOCKGATE_BENCH_KEY")
non200 = 0
response = function(status, headers, body) if status ~= 200 then non200 = non200 + 1 end end
done = function(summary, latency, requests)
  io.write(string.format('LOCKGATE {"requests": %d, "seconds": %f, "p50": %f, "p90": %f, "p99": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass
class Cell:
    name: str
    connections: int
    rows: int  # examples per request
    requests_per_s: float
    p50: float
    p90: float
    p99: float
    failed: int  # socket errors and non-200 answers
    mean_batch: float | None = None  # rows per model call, from the service's histogram
    ab: dict | None = None  # the same load from ApacheBench
    load_average: float = 0.0  # the machine's 1-minute load average after the cell: other work shares the cores
    spread: list[int] = field(default_factory=list)  # open connections per worker process during the cell
    cpu_ms_per_request: float = 0.0  # the workers' CPU time per request in the cell

    @property
    def examples_per_s(self) -> float:
        return self.requests_per_s * self.rows


def wrk(url: str, body: Path, content_type: str, connections: int, seconds: float, script: Path,
        during: Callable[[], None] | None = None) -> dict:
    """One wrk run; its Lua `done` hook prints the numbers as JSON. `during`
    is called once, a second into the run, with every connection open."""
    env = os.environ | {"LOCKGATE_BENCH_BODY": str(body), "LOCKGATE_BENCH_TYPE": content_type,
                        "LOCKGATE_BENCH_KEY": KEY, "LOCKGATE_BENCH_METHOD": "GET" if url.endswith("/livez") else "POST"}
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    if during:
        time.sleep(min(1.0, seconds / 2))
        during()
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk exited with {process.returncode}")
    result = json.loads(re.search(r"^LOCKGATE (.*)$", out, re.M).group(1))
    non200 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] += int(non200.group(1)) if non200 else 0
    return result


def ab(url: str, body: Path, content_type: str, connections: int, seconds: float) -> dict:
    """The same load from ApacheBench (`ab`, keep-alive), a second compiled
    generator, to cross-check wrk's latency percentiles."""
    command = ["ab", "-q", "-k", "-c", str(connections), "-t", f"{seconds:g}", "-n", "10000000", "-p", str(body),
               "-T", content_type, "-H", f"X-API-Key: {KEY}", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percent = {int(p): float(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M)}
    return {"requests_per_s": float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1)),
            "p50": percent[50], "p99": percent[99]}


def batch_histogram(url: str) -> tuple[float, float]:
    """(model calls, rows) so far, summed over the workers, from /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    count = sum(float(v) for v in re.findall(r"^lockgate_batch_size_count\S* (\S+)$", text, re.M))
    rows = sum(float(v) for v in re.findall(r"^lockgate_batch_size_sum\S* (\S+)$", text, re.M))
    return count, rows


def _workers(server: subprocess.Popen) -> list:
    import psutil

    return [p for p in psutil.Process(server.pid).children(recursive=True)
            if "_bentoml_impl.worker.service" in " ".join(p.cmdline())]


def workers_cpu_s(server: subprocess.Popen) -> float:
    """CPU seconds the worker processes have used, all their threads."""
    return sum(sum(w.cpu_times()[:2]) for w in _workers(server))


def connections_per_worker(server: subprocess.Popen, port: int) -> list[int]:
    """Open connections held by each worker process, most first: the kernel
    hands a new connection to whichever worker accepts first, so the spread
    can be far from even, and it shapes each cell's throughput."""
    import psutil

    counts = [sum(1 for c in w.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
              for w in _workers(server)]
    return sorted(counts, reverse=True)


def wait_for_every_worker(server: subprocess.Popen, port: int, workers: int, timeout: float = 120) -> None:
    """Until every worker listens on its own socket (serving.socket_per_worker):
    the first answer comes from the first worker up, and a cell started before
    the others would measure one worker (a Keras worker starts in about 5 s,
    longer while another is under load)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = {os.readlink(f"/proc/{w.pid}/fd/{c.fd}") for w in _workers(server) for c in w.net_connections("tcp")
                     if c.laddr.port == port and c.status == psutil.CONN_LISTEN}
        if len(listening) >= workers:
            return
        time.sleep(0.2)
    raise TimeoutError(f"not every one of {workers} workers was listening after {timeout:.0f} s")


def load(name: str, url: str, route: str, body: Path, content_type: str, rows: int, connections: int,
         seconds: float, script: Path, server: subprocess.Popen) -> Cell:
    wrk(url + route, body, content_type, connections, min(2.0, seconds), script)  # warm-up
    calls_before, rows_before = batch_histogram(url)
    spread: list[int] = []
    port = int(url.rsplit(":", 1)[1])
    cpu_before = workers_cpu_s(server)
    r = wrk(url + route, body, content_type, connections, seconds, script,
            during=lambda: spread.extend(connections_per_worker(server, port)))
    cpu = workers_cpu_s(server) - cpu_before
    calls, served_rows = batch_histogram(url)
    mean_batch = (served_rows - rows_before) / (calls - calls_before) if calls > calls_before else None
    cell = Cell(name, connections, rows, r["requests"] / r["seconds"], r["p50"], r["p90"], r["p99"], r["errors"],
                mean_batch, spread=spread, cpu_ms_per_request=1000 * cpu / max(r["requests"], 1))
    if route == "/predict" and shutil.which("ab"):
        cell.ab = ab(url + route, body, content_type, connections, seconds)
    cell.load_average = os.getloadavg()[0]
    print(cell, flush=True)
    return cell


def serve(target: str, env: dict[str, str], probe: tuple[str, bytes]) -> tuple[subprocess.Popen, str, float]:
    """Start `bentoml serve`; return (process, url, seconds to the first answered prediction)."""
    import httpx

    from lockgate.registry import bento_server

    port = bento_server.free_port()
    command = [str(Path(sys.executable).with_name("bentoml")), "serve", target, "--host", "127.0.0.1",
               "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
    route, body = probe
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve {target} exited with {process.returncode}")
        try:
            answer = httpx.post(url + route, content=body, timeout=5,
                                headers={"X-API-Key": KEY, "Content-Type": "application/json"})
            if answer.status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def in_process_ceiling(folder: Path, meta, x: np.ndarray, seconds: float) -> float:
    """Examples/s of the served runtime called directly on full batches, with
    every core's thread: what the machine does without HTTP."""
    from lockgate.export.runtimes import load_runtime
    from lockgate.families import family_for

    predict = load_runtime(folder, meta, threads=os.cpu_count() or 1,
                           warm_up=family_for(meta.family).requests.warm_up_input(meta))
    batches = [x[i : i + NPY_BATCH] for i in range(0, len(x) - NPY_BATCH + 1, NPY_BATCH)]
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            predict(batch)
            rows += len(batch)
    return rows / (time.perf_counter() - started)


def single_call_ms(folder: Path, meta, x: np.ndarray) -> float:
    """Median milliseconds of one call on one example, one thread: what
    batching can save per request at most."""
    from lockgate.export.runtimes import load_runtime
    from lockgate.families import family_for

    predict = load_runtime(folder, meta, threads=1, warm_up=family_for(meta.family).requests.warm_up_input(meta))
    times = []
    for i in range(300):
        started = time.perf_counter()
        predict(x[i % len(x)][None])
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def keras_copy(model_tag: str) -> str:
    """The same Bento model recorded for the Keras runtime, under its own tag."""
    import bentoml

    from lockgate.core.records import ServedMeta, ServedRuntime

    source = bentoml.models.get(model_tag)
    tag = f"{source.tag.name}-keras:{source.tag.version}"
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    meta = ServedMeta.read(source.path)
    meta = meta.model_copy(update={"runtime": ServedRuntime(reason="the Keras model, for the benchmark")})
    with bentoml.models.create(tag, metadata={"runtime": "keras"}) as model:
        shutil.copy(Path(source.path) / "model.keras", Path(model.path) / "model.keras")
        meta.write(model.path)
    return tag


def train_champion() -> str:
    from flows.training import training_pipeline
    from lockgate.core.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.export.formats = ["saved_model", "onnx"]
    settings.verify_bento = True
    result = training_pipeline(data="digits", settings=settings)
    assert result.status == "promoted", result.gate
    return result.package.bento_tag


def train_text_champion(folder: Path) -> str:
    """A text champion with default settings, on real product reviews (the
    modeldata package's, as bench/text_baselines.py reads them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from text_baselines import TEXTS, text_file

    from flows.training import training_pipeline
    from lockgate.core.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.export.formats = ["saved_model", "onnx"]
    result = training_pipeline(data=str(text_file("reviews", folder)), target=TEXTS["reviews"][3], settings=settings)
    assert result.status == "promoted", result.gate
    return result.package.bento_tag


def text_cells(work: Path, base_env: dict[str, str], script: Path, seconds: float, cold: dict[str, float],
               settings) -> tuple[list[Cell], dict[str, float], str]:
    """One review per request to the text champion on its packaged runtime
    (8 and 32 connections) and on the Keras runtime (32); and each runtime's
    single call on one text, in process."""
    import bentoml
    import pandas as pd

    from lockgate.core.records import ServedMeta
    from lockgate.core.tokens import token_ids
    from lockgate.registry import bento_server

    bento = train_text_champion(work)
    model_tag = str(bentoml.get(bento).info.models[0].tag)
    folder = Path(bentoml.models.get(model_tag).path)
    meta = ServedMeta.read(folder)
    reviews = pd.read_csv(work / "reviews.csv")["review"].astype(str).tolist()
    one = work / "one_text.json"
    one.write_bytes(json.dumps({"texts": [reviews[0]]}).encode())
    cells = []
    for target, extra, runtime, connections in [
        (bento, {}, meta.runtime.name, (8, 32)),
        ("services.service:LockgateService", {"LOCKGATE_MODEL_TAG": keras_copy(model_tag)}, "keras", (32,)),
    ]:
        label = f"text, {runtime}"
        process, url, cold[label] = serve(target, base_env | extra, ("/predict_text", one.read_bytes()))
        try:
            if settings.serving.socket_per_worker:
                wait_for_every_worker(process, int(url.rsplit(":", 1)[1]), settings.serving.worker_count())
            for c in connections:
                cells.append(load(f"JSON, 1 review ({runtime}, batching on)", url, "/predict_text", one,
                                  "application/json", 1, c, seconds, script, process))
        finally:
            bento_server.stop(process)
    ids = token_ids(reviews[:300], meta.vocabulary)
    keras_folder = Path(bentoml.models.get(keras_copy(model_tag)).path)
    calls = {meta.runtime.name: single_call_ms(folder, meta, ids),
             "keras": single_call_ms(keras_folder, ServedMeta.read(keras_folder), ids)}
    return cells, calls, f"`{bento}`, {meta.runtime.name} ({meta.runtime.reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per cell")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--home", type=Path, help="a workspace with a digits champion (default: train one)")
    parser.add_argument("--bento", help="the Bento tag to serve from --home")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    home = args.home or Path(tempfile.mkdtemp(prefix="lockgate-bench-serving-"))
    os.environ.update(LOCKGATE_HOME=str(home.resolve()), LOCKGATE_TRAINING__EPOCHS=str(args.epochs))
    from lockgate.core.settings import apply_environment, get_settings

    settings = get_settings()
    apply_environment(settings)
    import bentoml

    from lockgate.core.records import ServedMeta
    from lockgate.data.datasets import read_snapshot
    from lockgate.registry.packaging import bento_size

    bento = args.bento or train_champion()
    model_tag = str(bentoml.get(bento).info.models[0].tag)
    folder = Path(bentoml.models.get(model_tag).path)
    meta = ServedMeta.read(folder)
    snapshot = next(p for p in settings.snapshots_dir.iterdir() if (p / "meta.json").is_file())
    x = read_snapshot(str(snapshot)).x.astype("float32")

    work = Path(tempfile.mkdtemp(prefix="lockgate-bench-bodies-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    one = work / "one.json"
    one.write_bytes(json.dumps({"instances": x[:1].tolist()}).encode())
    batch = work / "batch.npy"
    with batch.open("wb") as f:
        np.save(f, x[:NPY_BATCH], allow_pickle=False)
    probe = ("/predict", one.read_bytes())
    base_env = os.environ | {"LOCKGATE_API_KEYS": KEY, "BENTOML_DO_NOT_TRACK": "true"}
    json_type, npy_type = "application/json", "application/x-npy"
    cells: list[Cell] = []
    cold: dict[str, float] = {}
    s = args.seconds

    no_log = {"LOCKGATE_SERVING__TRAFFIC_SAMPLE": "0"}
    runs = [
        ("on", bento, {"LOCKGATE_SERVING__BATCHING": "true"}, meta.runtime.name, ""),
        ("on", bento, {"LOCKGATE_SERVING__BATCHING": "true"} | no_log, meta.runtime.name, ", traffic log off"),
        ("off", bento, {"LOCKGATE_SERVING__BATCHING": "false"}, meta.runtime.name, ""),
        ("on", "services.service:LockgateService",
         {"LOCKGATE_MODEL_TAG": keras_copy(model_tag), "LOCKGATE_SERVING__BATCHING": "true"}, "keras", ""),
        ("off", "services.service:LockgateService",
         {"LOCKGATE_MODEL_TAG": keras_copy(model_tag), "LOCKGATE_SERVING__BATCHING": "false"}, "keras", ""),
    ]
    for batching, target, extra, runtime, variant in runs:
        label = f"{runtime}, batching {batching}{variant}"
        traffic = home / "traffic"
        shutil.rmtree(traffic, ignore_errors=True)
        process, url, cold[label] = serve(target, base_env | extra, probe)
        try:
            if settings.serving.socket_per_worker:
                wait_for_every_worker(process, int(url.rsplit(":", 1)[1]), settings.serving.worker_count())
            if variant:
                for c in (8, 32):
                    cells.append(load(f"JSON, 1 example ({label})", url, "/predict", one, json_type, 1, c, s, script,
                                      process))
            elif runtime == meta.runtime.name and batching == "on":
                for c in (1, 8, 32):
                    cells.append(load(f"JSON, 1 example ({label})", url, "/predict", one, json_type, 1, c, s, script,
                                      process))
                cells.append(load(f"/livez, no model ({label})", url, "/livez", one, json_type, 0, 8, s, script,
                                  process))
                for c in (8, 32):
                    cells.append(load(f"npy, {NPY_BATCH}-example batches ({label})", url, "/predict_npy", batch,
                                      npy_type, NPY_BATCH, c, s, script, process))
            else:
                cells.append(load(f"JSON, 1 example ({label})", url, "/predict", one, json_type, 1, 32, s, script,
                                  process))
        finally:
            from lockgate.registry import bento_server

            bento_server.stop(process)
    ceiling = in_process_ceiling(folder, meta, x, s)
    keras_folder = Path(bentoml.models.get(keras_copy(model_tag)).path)
    keras_meta = ServedMeta.read(keras_folder)
    ceiling_keras = in_process_ceiling(keras_folder, keras_meta, x, s)
    call_ms = {meta.runtime.name: single_call_ms(folder, meta, x), "keras": single_call_ms(keras_folder, keras_meta, x)}
    size = bento_size(bento)
    text, text_calls, text_bento = text_cells(work, base_env, script, s, cold, settings)
    write_report(args, bento, meta, cells + text, cold, ceiling, ceiling_keras, size, settings, call_ms,
                 (text_bento, text_calls))


def write_report(args, bento, meta, cells, cold, ceiling, ceiling_keras, size, settings, call_ms, text) -> None:
    from lockgate.export.runtimes import AUTO_CALLS

    def find(prefix: str, connections: int) -> Cell:
        return next(c for c in cells if c.name.startswith(prefix) and c.connections == connections)

    runtime = meta.runtime.name
    lines = [
        f"Digits CNN (`{bento}`), served by **{runtime}** ({meta.runtime.reason}); "
        f"{settings.serving.worker_count()} worker processes, max_batch_size={settings.serving.max_batch_size}, "
        f"max_latency_ms={settings.serving.max_latency_ms}, model calls "
        + ", ".join(f"{name} {'inline on the event loop' if c.model_calls == 'inline' else 'on the model thread'}"
                    for name, c in AUTO_CALLS.items())
        + f", tracing {'on' if settings.serving.tracing else 'off'}, collector thresholds "
        f"{settings.serving.gc_thresholds}, request timers cancelled once answered; `wrk` with one thread on the same 2 cores as the "
        f"server, {args.seconds:g} s per cell after a warm-up. \"mean batch\" is rows per model call under that "
        "load, from the service's `lockgate_batch_size` histogram; \"Little's law mean\" is connections / "
        "requests per second, the mean latency the throughput implies; ab (ApacheBench, keep-alive) repeats each "
        "JSON cell as a second compiled load generator; \"load average\" is the machine's after the cell (2 cores: "
        "above about 2, other work was sharing them); \"connections per worker\" is how the kernel spread wrk's "
        "connections over the worker processes (" + ("each listens on a socket of its own in one SO_REUSEPORT "
        "group, and the kernel hands a connection to one by a hash of its addresses" if settings.serving.socket_per_worker
        else "one shared socket: whichever worker accepts first takes them") + "), which shapes each cell. "
        "wrk's percentiles are corrected for coordinated omission (a stall counts for the requests a steady "
        "client would have sent during it), ab's are not.",
        "",
        "| load | connections | requests/s | examples/s | p50 ms | p90 ms | p99 ms | failed | mean batch | "
        "Little's law mean ms | ab: requests/s, p50, p99 ms | connections per worker | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for c in cells:
        batch = f"{c.mean_batch:.1f}" if c.mean_batch else "-"
        cross = f"{c.ab['requests_per_s']:,.0f}, {c.ab['p50']:.0f}, {c.ab['p99']:.0f}" if c.ab else "-"
        lines.append(f"| {c.name} | {c.connections} | {c.requests_per_s:,.0f} | {c.examples_per_s:,.0f} | "
                     f"{c.p50:.1f} | {c.p90:.1f} | {c.p99:.1f} | {c.failed} | {batch} | "
                     f"{1000 * c.connections / c.requests_per_s:.1f} | {cross} | "
                     f"{' / '.join(map(str, c.spread)) or '-'} | {c.load_average:.2f} |")
    lines.append(f"| in process, {runtime}, batches of {NPY_BATCH}, {os.cpu_count()} threads | - | - | "
                 f"{ceiling:,.0f} | - | - | - | - | {NPY_BATCH} | - | - | - | - |")
    lines.append(f"| in process, keras, batches of {NPY_BATCH} | - | - | {ceiling_keras:,.0f} | - | - | - | - | "
                 f"{NPY_BATCH} | - | - | - | - |")
    json32 = find(f"JSON, 1 example ({runtime}, batching on", 32)
    off32 = find(f"JSON, 1 example ({runtime}, batching off", 32)
    keras_on, keras_off = find("JSON, 1 example (keras, batching on", 32), find("JSON, 1 example (keras, batching off", 32)
    logged = {c: find(f"JSON, 1 example ({runtime}, batching on)", c) for c in (8, 32)}
    unlogged = {c: find(f"JSON, 1 example ({runtime}, batching on, traffic log off", c) for c in (8, 32)}
    npy = max((c for c in cells if c.name.startswith("npy")), key=lambda c: c.examples_per_s)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def like_for_like(on: Cell, off: Cell) -> bool:
        """Both cells had their connections spread over the workers alike
        (the busiest worker's share within an eighth of the connections)."""
        return len(on.spread) == len(off.spread) and abs(max(on.spread) - max(off.spread)) <= on.connections / 8

    def gain(on: Cell, off: Cell) -> float:
        """on/off in requests/s when the connection spreads match; otherwise in
        worker CPU per request, which the spread does not change (with one
        worker idle, requests/s measures one worker against two)."""
        if like_for_like(on, off):
            return on.requests_per_s / off.requests_per_s
        return off.cpu_ms_per_request / on.cpu_ms_per_request

    def batching_gain(on: Cell, off: Cell, runtime_name: str) -> str:
        """on/off, beside what one model call and one unbatched request cost."""
        measured = (f"{gain(on, off):.2f}x" + ("" if like_for_like(on, off) else
                    f" in worker CPU per request ({off.cpu_ms_per_request:.2f} ms off, {on.cpu_ms_per_request:.2f} ms on): "
                    f"the connections spread differently ({' / '.join(map(str, on.spread))} on, "
                    f"{' / '.join(map(str, off.spread))} off), so requests/s ({on.requests_per_s / off.requests_per_s:.2f}x) "
                    "is not like for like"))
        return (f"{measured} (one call on one example: {call_ms[runtime_name]:.3f} ms in process; one request "
                f"unbatched: {off.cpu_ms_per_request:.2f} ms of the workers' CPU)")

    lines += [
        "",
        "| goal | measured | |",
        "|---|---|---|",
        f"| JSON single example, 32 connections: >= 1,000 requests/s, p99 <= 50 ms (wrk) | {json32.requests_per_s:,.0f} "
        f"requests/s, p99 {json32.p99:.1f} ms" + (f" (ab: {json32.ab['requests_per_s']:,.0f} requests/s, p99 "
        f"{json32.ab['p99']:.0f} ms)" if json32.ab else "") + f" | {verdict(json32.requests_per_s >= 1000 and json32.p99 <= 50)} |",
        f"| binary batches >= 50% of the in-process ceiling | {npy.examples_per_s:,.0f} of {ceiling:,.0f} examples/s "
        f"= {npy.examples_per_s / ceiling:.0%} | {verdict(npy.examples_per_s >= 0.5 * ceiling)} |",
        f"| batching on >= 2x off at 32 connections ({runtime}) | {batching_gain(json32, off32, runtime)} | "
        f"{verdict(gain(json32, off32) >= 2)} |",
        f"| the same on the Keras runtime | {batching_gain(keras_on, keras_off, 'keras')} | "
        f"{verdict(gain(keras_on, keras_off) >= 2)} |",
        *[f"| traffic log on within 10% of off, {c} connections | {gain(logged[c], unlogged[c]):.2f}x"
          + ("" if like_for_like(logged[c], unlogged[c]) else " in worker CPU per request (connections spread differently)")
          + f" ({logged[c].requests_per_s:,.0f} against {unlogged[c].requests_per_s:,.0f} requests/s; worker CPU "
          f"{logged[c].cpu_ms_per_request:.3f} against {unlogged[c].cpu_ms_per_request:.3f} ms a request) | "
          f"{verdict(gain(logged[c], unlogged[c]) >= 0.9)} |" for c in (8, 32)],
        f"| cold start to the first answer <= 5 s ({runtime}, batching on) | "
        f"{cold[f'{runtime}, batching on']:.1f} s | {verdict(cold[f'{runtime}, batching on'] <= 5)} |",
        "",
        "Cold start, from `bentoml serve` to the first answered prediction: "
        + "; ".join(f"{name} {seconds:.1f} s" for name, seconds in cold.items()) + ".",
        "",
        f"Bento `{bento}`: {size / 1e6:.1f} MB with its model (code, the locked serve requirements and the model "
        "folder with its shipped exports).",
        "",
        f"Text rows: the reviews champion {text[0]}; the service tokenises each review with the model's vocabulary "
        "and the model reads the ids. One call on one text, in process: "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in text[1].items()) + ".",
    ]
    body = "\n".join(lines)
    print(body)
    from report import write_section

    write_section("serving", f".venv/bin/python bench/serving.py --seconds {args.seconds:g}", body)


if __name__ == "__main__":
    main()
