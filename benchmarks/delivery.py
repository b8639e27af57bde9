"""Delivery throughput: Switchyard's sender against the local sandbox, beside the sandbox's raw
capacity and a naive sequential loop, measured in the same run.

    python benchmarks/delivery.py [--size N] [--ledger-lines L] [--processes P]
    (N messages, default 100,000, across email, SMS and push; L extra ledger lines landed
    before the run, default 0, to time reading the ledger state a run needs; P senders at
    once for the partitioned figure, default 2: the machine's cores)

The sandbox runs in its own process on 127.0.0.1, as a provider would be elsewhere.
  raw     the sandbox's capacity: bare keep-alive HTTP/1.1 clients (http.client, no Switchyard)
          in two processes posting valid Twilio requests for a few seconds;
  naive   one httpx request at a time, no ledger: what a plain script gets;
  sender  N messages through a run's channel queues (activations.channels.queues: a batch of
          256 per channel at a time, two in flight per channel) and the Sender, with the
          ledger written (attempted fsynced per batch, then the outcomes), rate limits and
          concurrency per channel as settings, over the HTTP transport a run sends with
          (activations/channels/transport.py; SWITCHYARD_HTTP_TRANSPORT=httpx for httpx's own).
  partitioned  the same N messages split by person partition over P sender processes at once
          (as Dagster's partitioned sends run), each with its share of every rate limit and of
          each concurrency set: the way past one process's interpreter lock. With 2/10 of the
          messages texts, the text limit (1,000/s) caps it at 5,000 sends/s, and a bit more
          for the first second's burst.
Then, the sandbox answering each request `--latency-ms` later (default 50, as providers across
the internet do), the naive loop and the sender again: naive_per_second_at_latency and
sends_per_second_at_latency (up to 5,000 messages).
Prints one `name=value unit` line per figure: sends_per_second, sandbox_raw_per_second (the median
of three samples), naive_per_second, sender_vs_raw, requests_per_second (emails go up to 256 to a
request: the raw figure counts requests), sender_cpu_us_per_send, p50_request_ms, p99_request_ms,
rate_limit_violations (1-second windows in which a channel's provider saw more than its limit
allows), peak_rss_mib (the sender's process), ledger_lines (the history landed plus the run's),
ledger_compact_seconds (compacting the history: activations.ledger.compact),
ledger_state_read_seconds (the state a run of the N messages reads: their keys, every open key,
their people's sends in the cap's day) beside ledger_state_read_uncompacted_seconds (the same read
with the history still in run files), ledger_decided_seconds (a decision round's decided keys of
the journey's open entries, compacted history) beside ledger_decided_unbounded_seconds (the
same read, as if it were not known when the entries began: every closed key of the journey
is scanned; both must find the same keys, ledger_decided_keys, or the benchmark stops),
ledger_history_days,
ledger_peak_rss_mib (the process that landed, compacted and read the history: not the
sender's), partition_processes,
sends_per_second_partitioned, sender_vs_raw_partitioned, requests_per_second_partitioned,
requests_vs_raw_partitioned, rate_limit_violations_partitioned, not_sent_partitioned and
sends_per_second_partitioned_unlimited (the same senders with no rate limits).
The history (land_ledger_lines) is of the `--history-days` before the run (default 30): the
journey's own sends, a tenth of the keys deferred by another journey, and a tenth of the run's
keys deferred earlier.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import queue
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from activations import ledger  # noqa: E402
from activations.channels import ChannelSettings, Message, Sender  # noqa: E402
from activations.channels.core import DirectClient, Outgoing  # noqa: E402
from activations.channels.policy import RateLimiter, RetryPolicy  # noqa: E402
from activations.channels.queues import ChannelQueues, Queued  # noqa: E402
from activations.channels.transport import http_transport  # noqa: E402
from activations.ledger.compact import compact  # noqa: E402
from activations.ledger.keys import send_key_sql  # noqa: E402
from activations.partitions import PersonPartition, all_partitions  # noqa: E402
from sandbox import SANDBOX_CREDENTIALS  # noqa: E402
from switchyard import landing  # noqa: E402

MIX = (("email", 5), ("push", 3), ("sms", 2))  # tenths of the messages per channel
NOW = datetime(2026, 11, 26, 12, 0)
RATE_LIMITS = {"email": 3000.0, "push": 2000.0, "sms": 1000.0}  # per second, as settings would
CONCURRENCY = {"email": 8, "push": 8, "sms": 8}
BATCH = 256
RAW_SECONDS = 2.0
RAW_SAMPLES = 3
NAIVE_MESSAGES = 1000


def emit(name: str, value: object, unit: str = "") -> None:
    print(f"{name}={value} {unit}".rstrip(), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sandbox(port: int, latency_seconds: float = 0.0) -> subprocess.Popen[bytes]:
    code = (
        "from sandbox import Sandbox; "
        f"Sandbox(port={port}, latency_seconds={latency_seconds}).serve_forever()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_DIR)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/messages", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def message(n: int, channel: str) -> Message:
    key = ledger.send_key("bench", "step", f"p{n}", f"e{n}")  # as a run keys its sends
    if channel == "email":
        return Message(key, "email", f"p{n}@example.com", "Your cart is waiting", subject="Hi")
    if channel == "sms":
        return Message(key, "sms", f"+1415555{n % 10000:04d}", "Your cart is waiting")
    return Message(key, "push", f"token-{n}", "Your cart is waiting", title="Still there?")


def messages(size: int) -> list[Outgoing]:
    wheel = [channel for channel, tenths in MIX for _ in range(tenths)]
    out = []
    for n in range(size):
        m = message(n, wheel[n % len(wheel)])
        ref = ledger.SendRef(m.send_key, "bench", "step", f"p{n}", f"e{n}")
        out.append(Outgoing(ref, m))
    return out


def _raw_worker(port: int, seconds: float, threads: int, out: Any) -> None:
    c = SANDBOX_CREDENTIALS
    path = f"/2010-04-01/Accounts/{c.twilio_account_sid}/Messages.json"
    import base64

    auth = base64.b64encode(f"{c.twilio_account_sid}:{c.twilio_auth_token}".encode()).decode()
    body = b"To=%2B14155550123&From=%2B14155550100&Body=hi"
    headers = {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.monotonic() < deadline:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            if response.status == 201:
                done[i] += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(sum(done))


def raw_capacity(port: int) -> float:
    """Requests a second the sandbox answers for bare clients in two processes: the median of
    RAW_SAMPLES samples (one sample swung by a third from run to run)."""
    samples = []
    for _ in range(RAW_SAMPLES):
        queue: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=_raw_worker, args=(port, RAW_SECONDS, 8, queue))
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        samples.append(sum(queue.get() for _ in procs) / RAW_SECONDS)
        for p in procs:
            p.join()
    return sorted(samples)[len(samples) // 2]


def naive(base_url: str, batch: list[Outgoing]) -> float:
    clients = ChannelSettings.for_sandbox(base_url).clients()
    with httpx.Client() as client:
        started = time.perf_counter()
        for o in batch:
            channel = clients[o.message.channel]
            assert not isinstance(channel, DirectClient)  # the benchmark's are all HTTP
            client.send(channel.build_request(client, o.message))
        return len(batch) / (time.perf_counter() - started)


class TimedTransport(httpx.BaseTransport):
    """Each request's time on the wire, for the latency percentiles, through the transport a
    run sends with (activations/channels/transport.py; SWITCHYARD_HTTP_TRANSPORT)."""

    def __init__(self, max_connections: int) -> None:
        limits = httpx.Limits(max_connections=max_connections)
        self.inner = http_transport(max_connections) or httpx.HTTPTransport(limits=limits)
        self.latencies: list[float] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = self.inner.handle_request(request)
        response.read()
        self.latencies.append(time.perf_counter() - started)
        return response

    def close(self) -> None:
        self.inner.close()


def land_ledger_lines(home: Path, lines: int, size: int, days: float = 1.0) -> None:
    """`lines` ledger lines of earlier sends, as runs over the `days` before NOW would have landed
    them (two lines a key, a key per person of a million, the people the run sends to among
    them): the journey's own, final; a tenth of the keys deferred by another journey (entries
    of a days-tier journey waiting for its next run, still open); a tenth of the run's own
    keys deferred by an earlier run (capped yesterday, due again now); and as many keys of the
    run's entries' earlier step, sent since they began (decided keys a tick must find). The
    history's entry ids are none of the run's, in the same range of values (as hashed ids)."""
    import duckdb

    folder = landing.table_dir(home, "ledger", "deliveries")
    day = 86_400
    deferred = "(i // 2) % 10 = 0"
    stamp = f"""strftime(
        timestamp '{NOW - timedelta(days=days)}' + to_microseconds(
            (i * {days * day}::double / {lines} * 1e6)::bigint
        ),
        '%Y-%m-%dT%H:%M:%S.%f'
    )"""
    run_key = send_key_sql("'bench'", "'step'", "'p' || n", "'e' || n")  # a run's, as sent
    earlier_key = send_key_sql("'bench'", "'welcome'", "'p' || n", "'e' || n")
    con = duckdb.connect()
    con.execute(
        f"""
        copy (
            select md5((i // 2)::varchar) as send_key, 'r' || (i // 100000) as run_id,
                case when {deferred} then 'winback' else 'bench' end as journey,
                'step' as step, 'p' || ((i // 2) % 1000000) as person_id,
                'e' || (i // 2) || 'h' as entry_id,
                case when not {deferred} then 'sms' end as channel,
                case when not {deferred} then '+14155550123' end as recipient,
                case
                    when {deferred} then 'deferred'
                    when i % 2 = 0 then 'attempted'
                    else 'sent'
                end as status,
                case when {deferred} then 'capped' end as reason,
                case when {deferred} then 'until later' end as reason_detail,
                case when not {deferred} then 1 end as attempt, null as http_status,
                null as provider_message_id, null as subject,
                case when not {deferred} then 'b' end as body,
                {stamp} as recorded_at
            from range({lines}) t(i)
            union all
            select {run_key}, 'r-earlier', 'bench', 'step', 'p' || n, 'e' || n, null, null,
                'deferred', 'capped', 'until {NOW.isoformat()}', null, null, null, null, null,
                '{(NOW - timedelta(hours=12)).isoformat(timespec="microseconds")}'
            from range(0, {size}, 10) t(n)
            union all
            select {earlier_key}, 'r-earlier', 'bench', 'welcome', 'p' || n, 'e' || n, 'sms',
                '+14155550123', 'sent', null, null, 1, null, null, null, 'b',
                '{(NOW - timedelta(hours=6)).isoformat(timespec="microseconds")}'
            from range(0, {size}, 10) t(n)
        ) to '{folder}/run-history.jsonl' (format json)
        """
    )
    con.close()


# When the run's open entries began: before the earlier run that deferred their keys.
ENTERED_AT = NOW - timedelta(hours=13)


def decide_keys(home: Path, batch: list[Outgoing], bounded: bool = True) -> int:
    """What each decision round of a run of the journey builds: the decided keys (in SQL) of
    its open entries, the run's (the history's entries of the journey have all moved on).
    Not `bounded`: the entries' entered_at unknown, so every closed key of the journey is read
    (as before the reader bounded the read by when the entries began). Returns the keys found."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        entered = ENTERED_AT if bounded else None
        entries = pa.table(
            {
                "entry_id": pa.array([o.ref.entry_id for o in batch], pa.string()),
                "entered_at": pa.array([entered] * len(batch), pa.timestamp("us")),
            }
        )
        con.register("open_entries", entries)
        ledger.create_decided(
            con, home, "bench", {}, "select entry_id, entered_at from open_entries"
        )
        (found,) = con.execute("select count(*) from decided").fetchone() or (0,)
        return int(found)
    finally:
        con.close()


def violations(base_url: str) -> int:
    """1-second windows in which a provider saw more of a channel than its limit lets through
    (the token bucket's burst, one second's worth, plus one second's rate)."""
    received = httpx.get(f"{base_url}/_sandbox/messages", timeout=60).json()
    per_second: Counter[tuple[str, int]] = Counter()
    for r in received:
        at = datetime.fromisoformat(r["received_at"]).timestamp()
        per_second[(r["channel"], int(at))] += 1
    return sum(1 for (ch, _), n in per_second.items() if n > 2 * RATE_LIMITS[ch])


@dataclass
class Sent:
    outcomes: Counter[str]
    seconds: float
    latencies: list[float]  # each request's, sorted
    cpu_seconds: float  # the sender process's, every thread

    @property
    def requests(self) -> int:
        return len(self.latencies)


def send_all(
    base_url: str,
    batch: list[Outgoing],
    home: Path,
    partition: PersonPartition | None = None,
    limited: bool = True,
) -> Sent:
    """`batch` through the channel queues a run sends with (BATCH messages a batch), ledger in
    `home`. `partition`: the sender is one partition's, of several at once, with its share of
    each rate limit and of each concurrency (as run_journey gives it). `limited`: with the
    RATE_LIMITS (else none: what the machine can do)."""
    share = partition.count if partition is not None else 1
    writer = ledger.LedgerWriter(home, "bench")
    transport = TimedTransport(64)
    limits = RATE_LIMITS if limited else {}
    sender = Sender(
        httpx.Client(transport=transport),
        ChannelSettings.for_sandbox(base_url).clients(),
        writer,
        lambda: NOW,
        RetryPolicy(),
        {ch: RateLimiter(rate / share) for ch, rate in limits.items()},
        {ch: partition.share_of(n) if partition else n for ch, n in CONCURRENCY.items()},
    )
    started, cpu = time.perf_counter(), time.process_time()
    outcomes: Counter[str] = Counter()
    queues = ChannelQueues(
        sender,
        lambda queued, outcome: outcomes.update([outcome.status]),
        lambda queued: outcomes.update(["withdrawn"]),
        BATCH,
    )
    for outgoing in batch:
        queues.add(Queued(outgoing, NOW))
    queues.finish()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    sender.close()
    writer.close()
    return Sent(outcomes, seconds, sorted(transport.latencies), cpu)


def send_partitioned(
    base_url: str, batch: list[Outgoing], processes: int, limited: bool = True
) -> tuple[Counter[str], float, int]:
    """`batch` split by person partition (activations/partitions.py) across `processes` senders
    in processes of their own, all at once, each with its share of every rate limit and of each
    concurrency, as Dagster's partitioned sends run: the outcomes, the seconds from the start
    to the last sender's end, and the requests made."""
    context = multiprocessing.get_context("fork")
    partitions = all_partitions(processes)
    ready = context.Barrier(processes + 1)
    out = context.Queue()

    def sender(partition: PersonPartition, home: Path) -> None:
        part = [o for o in batch if partition.holds(o.ref.person_id)]
        landing.ensure_layout(home)
        ready.wait(timeout=120)
        sent = send_all(base_url, part, home, partition, limited)
        out.put((sent.outcomes, sent.requests))

    with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
        children = [
            context.Process(target=sender, args=(p, Path(tmp) / str(p.index))) for p in partitions
        ]
        for child in children:
            child.start()
        outcomes: Counter[str] = Counter()
        requests = 0
        try:
            ready.wait(timeout=120)  # a sender that died before it would leave it broken
            started = time.perf_counter()
            for _ in children:
                counted, made = out.get(timeout=600)
                outcomes.update(counted)
                requests += made
            seconds = time.perf_counter() - started
        except BaseException:  # a sender failed or hung: none is left running
            for child in children:
                child.terminate()
            raise
        finally:
            for child in children:
                child.join()
    return outcomes, seconds, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="messages to send")
    parser.add_argument("--ledger-lines", type=int, default=0, help="extra ledger lines landed")
    parser.add_argument(
        "--history-days", type=float, default=30.0, help="the days those lines are spread over"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="the providers' answer time, second pass"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="senders at once, one person partition each"
    )
    args = parser.parse_args()
    port = free_port()
    sandbox = start_sandbox(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        raw = raw_capacity(port)
        naive_rate = naive(base_url, messages(NAIVE_MESSAGES))
        sandbox.kill()
        sandbox.wait()
        port = free_port()  # a fresh sandbox: the rate check reads only the sender's requests
        sandbox = start_sandbox(port)
        base_url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
            home = Path(tmp)
            landing.ensure_layout(home)
            batch = messages(args.size)
            ledger_figures = in_child(
                ledger_history, home, args.ledger_lines, args.size, args.history_days
            )
            sent = send_all(base_url, batch, home)
            outcomes, seconds, latencies = sent.outcomes, sent.seconds, sent.latencies
            lines = sum(1 for _ in (home / writer_file(home)).open())
            if args.ledger_lines:
                lines += args.ledger_lines + 2 * len(range(0, args.size, 10))
        sent_rate = outcomes["sent"] / seconds
        emit("sends_per_second", f"{sent_rate:.0f}", "sends/s")
        emit("sandbox_raw_per_second", f"{raw:.0f}", "requests/s")
        emit("naive_per_second", f"{naive_rate:.0f}", "sends/s")
        emit("sender_vs_raw", f"{sent_rate / raw:.2f}", "x")
        # Emails go up to BATCH to a request: the sandbox's raw figure counts requests.
        emit("requests_per_second", f"{sent.requests / seconds:.0f}", "requests/s")
        emit("sender_cpu_us_per_send", f"{1e6 * sent.cpu_seconds / len(batch):.0f}", "us")
        emit("p50_request_ms", f"{1000 * latencies[len(latencies) // 2]:.1f}", "ms")
        emit("p99_request_ms", f"{1000 * latencies[int(len(latencies) * 0.99)]:.1f}", "ms")
        emit("rate_limit_violations", violations(base_url), "windows")
        emit("peak_rss_mib", peak_rss_mib(), "MiB")
        emit("ledger_lines", lines, "lines")
        for name, (value, unit) in ledger_figures.items():
            emit(name, value, unit)
        emit("sent", outcomes["sent"], "messages")
        emit("not_sent", sum(outcomes.values()) - outcomes["sent"], "messages")
        # The way past one process: person partitions, each its own sender (docs/scaling.md).
        sandbox.kill()
        sandbox.wait()
        port = free_port()
        sandbox = start_sandbox(port)
        base_url = f"http://127.0.0.1:{port}"
        parted, seconds, requests = send_partitioned(base_url, batch, args.processes)
        emit("partition_processes", args.processes, "processes")
        parted_rate = parted["sent"] / seconds
        emit("sends_per_second_partitioned", f"{parted_rate:.0f}", "sends/s")
        emit("sender_vs_raw_partitioned", f"{parted_rate / raw:.2f}", "x")
        emit("requests_per_second_partitioned", f"{requests / seconds:.0f}", "requests/s")
        emit("requests_vs_raw_partitioned", f"{requests / seconds / raw:.2f}", "x")
        emit("rate_limit_violations_partitioned", violations(base_url), "windows")
        emit("not_sent_partitioned", len(batch) - parted["sent"], "messages")
        # The same without rate limits: what the senders and the machine can do (the texts'
        # limit caps the figure above at 5,000 sends/s and the first second's burst).
        unlimited, seconds, _ = send_partitioned(base_url, batch, args.processes, limited=False)
        rate = unlimited["sent"] / seconds
        emit("sends_per_second_partitioned_unlimited", f"{rate:.0f}", "sends/s")
        # Providers answer in tens of milliseconds, not the sandbox's one: what concurrency buys.
        sandbox.kill()
        sandbox.wait()
        port = free_port()
        sandbox = start_sandbox(port, args.latency_ms / 1000)
        base_url = f"http://127.0.0.1:{port}"
        emit("provider_latency_ms", f"{args.latency_ms:g}", "ms")
        emit("naive_per_second_at_latency", f"{naive(base_url, messages(100)):.0f}", "sends/s")
        with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
            landing.ensure_layout(Path(tmp))
            slow = send_all(base_url, messages(min(args.size, 5000)), Path(tmp))
        emit(
            "sends_per_second_at_latency", f"{slow.outcomes['sent'] / slow.seconds:.0f}", "sends/s"
        )
    finally:
        sandbox.kill()
        sandbox.wait()


def writer_file(home: Path) -> Path:
    (path,) = landing.table_dir(home, "ledger", "deliveries").glob("run-bench-*.jsonl")
    return path


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def peak_rss_mib() -> str:
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"


def ledger_history(home: Path, lines: int, size: int, days: float) -> dict[str, tuple[str, str]]:
    """The ledger's figures: `lines` of history landed, then what a run of `size` messages reads
    before sending, with every line still in run files, then after compaction."""
    batch = messages(size)
    if lines:
        land_ledger_lines(home, lines, size, days)
    uncompacted = timed(lambda: read_run_state(home, batch))
    compact_seconds = timed(lambda: compact(home))
    read = timed(lambda: read_run_state(home, batch))
    decided = timed(lambda: decide_keys(home, batch))
    unbounded = timed(lambda: decide_keys(home, batch, bounded=False))
    found = decide_keys(home, batch)
    expected = len(range(0, size, 10)) if lines else 0  # the earlier step's, sent
    if found != decide_keys(home, batch, bounded=False) or found != expected:
        raise SystemExit(
            f"the decided keys: {found} read bounded, {expected} expected (and the unbounded "
            "read must find as many)"
        )
    return {
        "ledger_state_read_seconds": (f"{read:.2f}", "s"),
        "ledger_state_read_uncompacted_seconds": (f"{uncompacted:.2f}", "s"),
        "ledger_compact_seconds": (f"{compact_seconds:.2f}", "s"),
        "ledger_decided_seconds": (f"{decided:.2f}", "s"),
        "ledger_decided_unbounded_seconds": (f"{unbounded:.2f}", "s"),
        "ledger_decided_keys": (str(found), "keys"),
        "ledger_history_days": (f"{days:g}", "days"),
        "ledger_peak_rss_mib": (peak_rss_mib(), "MiB"),
    }


def _child(work: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    out.put(work(*args))


def in_child(work: Callable[..., Any], *args: Any) -> Any:
    """`work(*args)` in a forked process: its memory (DuckDB reading the history) is not the
    sender's peak_rss_mib."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child, args=(work, args, out))
    child.start()
    while True:
        try:
            result = out.get(timeout=5)
            break
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(
                    f"the ledger history step failed (exit code {child.exitcode})"
                ) from None
    child.join()
    return result


def read_run_state(home: Path, batch: list[Outgoing]) -> ledger.LedgerState:
    """The ledger state a run of `batch` reads: its keys, its people's sends within a day."""
    return ledger.read_state(
        home,
        keys=[o.ref.send_key for o in batch],
        people={o.ref.person_id for o in batch},
        sends_since=NOW - timedelta(hours=24),
        journey="bench",
        sends_until=NOW,
        latest_sends=1,  # a cap of one message a day, as a run of such a journey reads
        keys_entered_since=ENTERED_AT,
    )


if __name__ == "__main__":
    main()
