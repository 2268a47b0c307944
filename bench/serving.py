"""Serving throughput and latency on loopback, side by side in one run:

  (a) the service with adaptive batching,
  (b) the same service with batching off,
  (c) the model called in-process on full batches (this machine's ceiling),

at 1, 8 and 32 concurrent clients, each sending one example per request.
Also measures cold start: from `bentoml serve` to the first answered prediction.

    .venv/bin/python bench/serving.py --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

KEY = "bench-key"
CONCURRENCY = (1, 8, 32)


def start(bento: str, batching: bool, x: np.ndarray) -> tuple[subprocess.Popen, str, float]:
    """Start `bentoml serve`; return (process, url, seconds to the first answered prediction)."""
    import httpx

    from lockgate import bento_server

    env = os.environ | {"LOCKGATE_API_KEYS": KEY, "LOCKGATE_BATCHING": "true" if batching else "false"}
    started = time.perf_counter()
    process, url = bento_server.start(bento, env, subprocess.DEVNULL, timeout=300)  # type: ignore[arg-type]
    while True:
        try:
            response = httpx.post(f"{url}/predict", json={"instances": x[:1].tolist()},
                                  headers={"X-API-Key": KEY}, timeout=5)
            if response.status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    from lockgate import bento_server

    bento_server.stop(process)


async def load(url: str, x: np.ndarray, clients: int, seconds: float) -> dict[str, float]:
    """`clients` concurrent loops, each sending one example at a time for `seconds`."""
    import httpx

    bodies = [{"instances": x[i : i + 1].tolist()} for i in range(len(x))]
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=30, limits=limits) as client:
        for body in bodies[:clients]:  # warm-up
            await client.post("/predict", json=body)
        deadline = time.perf_counter() + seconds

        async def one_client(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await client.post("/predict", json=bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - sent)
                errors += response.status_code != 200
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return _summary(latencies, elapsed, errors)


def in_process(model_path: Path, x: np.ndarray, batch: int, seconds: float) -> dict[str, float]:
    """The model called directly on full batches: examples per second, latency per batch."""
    import keras

    model = keras.models.load_model(model_path)
    batches = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)] or [x[:batch]]
    model.predict_on_batch(batches[0])
    latencies, rows = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for b in batches:
            t = time.perf_counter()
            np.asarray(model.predict_on_batch(b))
            latencies.append(time.perf_counter() - t)
            rows += len(b)
    elapsed = time.perf_counter() - started
    summary = _summary(latencies, elapsed, 0)
    summary["throughput"] = rows / elapsed
    return summary


def _summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "throughput": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
        "errors": errors, "requests": len(latencies),
    }


def build_bento(epochs: int) -> tuple[str, Path, np.ndarray]:
    from flows.training import training_pipeline
    from lockgate.data import read_snapshot
    from lockgate.settings import get_settings

    settings = get_settings()
    result = training_pipeline(data="digits", settings=settings)
    snapshot = read_snapshot(result.validation.snapshot)
    return result.package.bento_tag, settings.runs_dir / result.run_id / "model.keras", snapshot.x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per cell")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-serving-"))
    os.environ.update(LOCKGATE_HOME=str(home), LOCKGATE_TRAINING__EPOCHS=str(args.epochs))
    from lockgate.settings import apply_environment, get_settings

    settings = get_settings()
    apply_environment(settings)
    bento, model_path, x = build_bento(args.epochs)
    results: dict[tuple[str, int], dict[str, float]] = {}
    cold: dict[str, float] = {}
    for name, batching in (("(a) adaptive batching", True), ("(b) batching off", False)):
        process, url, cold[name] = start(bento, batching, x)
        try:
            for clients in CONCURRENCY:
                results[(name, clients)] = asyncio.run(load(url, x, clients, args.seconds))
                print(name, clients, results[(name, clients)], flush=True)
        finally:
            stop(process)
    batch = settings.serving.max_batch_size
    ceiling = in_process(model_path, x, batch, args.seconds)
    print("(c)", ceiling, flush=True)

    lines = [
        f"Digits CNN ({bento}); each request carries one example; {args.seconds:g} s of load per cell; "
        f"max_batch_size={batch}, max_latency_ms={settings.serving.max_latency_ms}; the load generator runs on the "
        "same 2 cores as the server.",
        "",
        "| configuration | clients | throughput (examples/s) | p50 ms | p95 ms | p99 ms | non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, clients), r in results.items():
        lines.append(f"| {name} | {clients} | {r['throughput']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | "
                     f"{r['p99']:.1f} | {r['errors']} |")
    lines.append(f"| (c) in-process, full batches of {batch} | - | {ceiling['throughput']:.0f} | {ceiling['p50']:.1f} | "
                 f"{ceiling['p95']:.1f} | {ceiling['p99']:.1f} | 0 |")
    a32, b32 = results[("(a) adaptive batching", 32)]["throughput"], results[("(b) batching off", 32)]["throughput"]
    lines += [
        "",
        f"At 32 clients: (a)/(b) = **{a32 / b32:.2f}×**; (a)/(c) = **{a32 / ceiling['throughput']:.3f}** of the in-process ceiling.",
        "",
        "Cold start, from `bentoml serve` to the first answered prediction: "
        + "; ".join(f"{name} {seconds:.1f} s" for name, seconds in cold.items()) + ".",
    ]
    body = "\n".join(lines)
    print(body)
    from report import write_section

    write_section("serving", f".venv/bin/python bench/serving.py --seconds {args.seconds:g}", body)


if __name__ == "__main__":
    main()
