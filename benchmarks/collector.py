"""Collector throughput and durability: `switchyard collect` under a load generator posting
batches the way the official Segment client does, beside a bare server measured in the same run.

    python benchmarks/collector.py [--size N] [--rate R]
    (N events for the throughput pass, default 200,000; R events/s for the latency pass,
    default 1,000)

The collector runs in its own process on 127.0.0.1 (one uvicorn worker, as `switchyard collect`
starts it), its landing folder in a temporary home. The load generator: two processes of four
keep-alive HTTP/1.1 clients (http.client), each posting /v1/batch requests of 100 track events
(analytics-python's default upload size), the write key as Basic auth.
  throughput  as fast as the collector answers, until N events are acknowledged;
  latency     R events/s, paced, for 10 s: the acknowledgement latency percentiles;
  bare        the same throughput load against a bare Starlette app on the same server stack
              that parses the JSON and answers 200 without storing anything: what durability
              and the Segment checks cost.
A watcher lists the events folder every 5 ms: when each closed file appears, and its events.
Prints one `name=value unit` line per figure: events_per_second, bare_events_per_second,
collector_vs_bare, ack_p50_ms and ack_p99_ms (at R events/s), ack_to_file_p50_ms and
ack_to_file_p99_ms (acknowledgement to the event's file closed, i.e. readable by dbt),
acknowledged, landed and lost (acknowledged events not in a closed file at the end).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
KEY = "wk_bench"
BATCH = 100
PROCESSES = 2
THREADS = 4

BARE_APP = """
import json, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def batch(request):
    json.loads(await request.body())
    return JSONResponse({"success": True})

uvicorn.run(Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])]),
            host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def emit(name: str, value: object, unit: str) -> None:
    print(f"{name}={value} {unit}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def body(prefix: str) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    events = [
        {"type": "track", "messageId": f"{prefix}-{i}", "userId": f"u{i % 997}",
         "event": "cart_updated", "properties": {"sku": "tee", "price": 19.0},
         "context": {"library": {"name": "analytics-python"}}, "timestamp": now}
        for i in range(BATCH)
    ]  # fmt: skip
    return json.dumps({"batch": events, "sentAt": now}).encode()


def _worker(port: int, proc: int, per_thread: int, rate: float, label: str, out: Any) -> None:
    """Post `per_thread` batches from each of THREADS threads (paced at `rate` events/s across
    all workers when rate > 0); report (batch prefix, acknowledged at, latency) per batch."""
    auth = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    results: list[list[tuple[str, float, float]]] = [[] for _ in range(THREADS)]
    interval = PROCESSES * THREADS * BATCH / rate if rate else 0.0

    def run(thread: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start = time.time() + thread * interval / THREADS
        for n in range(per_thread):
            if interval:
                time.sleep(max(0.0, start + n * interval - time.time()))
            prefix = f"{label}p{proc}t{thread}n{n}"  # unique across passes: none is a retry
            payload = body(prefix)
            sent = time.time()
            conn.request("POST", "/v1/batch", payload, headers)
            answer = conn.getresponse()
            answer.read()
            acked = time.time()
            if answer.status == 200:
                results[thread].append((prefix, acked, acked - sent))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put([r for per in results for r in per])


def load(
    port: int, events: int, rate: float = 0.0, label: str = "x"
) -> tuple[list[tuple[str, float, float]], float]:
    """The acknowledged batches and the seconds the load took."""
    per_thread = max(1, events // (BATCH * PROCESSES * THREADS))
    queue: Any = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_worker, args=(port, p, per_thread, rate, label, queue))
        for p in range(PROCESSES)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    acked = [r for _ in procs for r in queue.get()]
    for p in procs:
        p.join()
    return acked, time.perf_counter() - started


class Watcher(threading.Thread):
    """When each closed events file appears, and the messageIds in it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.seen: dict[str, float] = {}  # messageId -> when its file appeared
        self.files: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan()
            time.sleep(0.005)
        self.scan()

    def scan(self) -> None:
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(".jsonl") or entry.name in self.files:
                continue
            appeared = time.time()
            self.files.add(entry.name)
            with open(entry.path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        self.seen.setdefault(json.loads(line)["messageId"], appeared)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200_000, help="events, throughput pass")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s, latency pass")
    args = parser.parse_args()

    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        wait_for(port, "/")
        acked, seconds = load(port, args.size)
        bare_rate = len(acked) * BATCH / seconds
    finally:
        bare.kill()
        bare.wait()

    with tempfile.TemporaryDirectory(prefix="collector-") as tmp:
        home = Path(tmp)
        port = free_port()
        env = {**os.environ, "SWITCHYARD_HOME": str(home), "SWITCHYARD_WRITE_KEYS": f"b:{KEY}"}
        server = subprocess.Popen(
            [sys.executable, "-m", "switchyard.cli", "collect", "--port", str(port)],
            cwd=PROJECT_DIR,
            env=env,
        )
        try:
            wait_for(port, "/health")
            folder = home / "landing" / "segment" / "events"
            watcher = Watcher(folder)
            watcher.start()
            acked, seconds = load(port, args.size, label="fast")
            rate = len(acked) * BATCH / seconds
            paced, _ = load(port, int(args.rate * 10), args.rate, label="paced")
            time.sleep(2.0)  # past the last rotation: every acknowledged event in a closed file
            watcher.stop.set()
            watcher.join()
        finally:
            server.terminate()
            server.wait()
    everything = acked + paced
    to_file = [
        watcher.seen[f"{prefix}-{i}"] - at
        for prefix, at, _ in everything
        for i in range(BATCH)
        if f"{prefix}-{i}" in watcher.seen
    ]
    acknowledged = len(everything) * BATCH
    emit("events_per_second", f"{rate:.0f}", "events/s")
    emit("bare_events_per_second", f"{bare_rate:.0f}", "events/s")
    emit("collector_vs_bare", f"{rate / bare_rate:.2f}", "x")
    emit("ack_p50_ms", f"{1000 * percentile([lat for _, _, lat in paced], 0.5):.1f}", "ms")
    emit("ack_p99_ms", f"{1000 * percentile([lat for _, _, lat in paced], 0.99):.1f}", "ms")
    emit("latency_pass_events_per_second", f"{args.rate:g}", "events/s")
    emit("ack_to_file_p50_ms", f"{1000 * percentile(to_file, 0.5):.0f}", "ms")
    emit("ack_to_file_p99_ms", f"{1000 * percentile(to_file, 0.99):.0f}", "ms")
    emit("acknowledged", acknowledged, "events")
    emit("landed", len(watcher.seen), "events")
    emit("lost", acknowledged - len(to_file), "events")


if __name__ == "__main__":
    main()
