"""Two tiers' runs at once, as the Dagster daemon runs them: `dagster dev` (webserver, daemon,
run queue, the instance's pools from orchestration/dagster.yaml) launches the seconds and the
hours tier together over a warehouse neither has built yet. Both finish without DuckDB's lock
error, their warehouse steps take turns in the pool, and the global frequency cap holds across
the two journeys they send for (the cart reminder and the welcome message)."""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestration.dev_server import dagster_dev
from sandbox import Sandbox
from switchyard import events, landing

PEOPLE = 6
# Steps that open the warehouse (WAREHOUSE_POOL): never two at once, across runs.
POOL_STEPS = ("dbt_models", "dbt_metrics", "published_warehouse", "journey__")


def seed(landing_dir: Path) -> None:
    """People who signed up and left a cart two hours ago: each due a welcome message (hours
    tier) and a cart reminder (seconds tier) now, and capped at one message a day."""
    landing.ensure_layout(landing_dir)
    then = datetime.now(UTC) - timedelta(hours=2)
    who = [f"both{i}" for i in range(PEOPLE)]
    rows = []
    for u in who:
        traits = {"email": f"{u}@example.com", "first_name": u}
        rows.append(events.identify(then - timedelta(minutes=1), user_id=u, traits=traits))
        rows.append(events.track("signed_up", then, user_id=u))
        rows.append(events.track("cart_updated", then, user_id=u,
                                 properties={"sku": "sku-tee", "quantity": 1}))  # fmt: skip
    landing.write_batch(landing_dir, "segment", "events", rows)
    consents = [events.consent(u, "email", "subscribed", then) for u in who]
    landing.write_batch(landing_dir, "preferences", "consents", consents)


def overlaps(steps: list[tuple[float, float, str]]) -> list[tuple[str, str]]:
    ordered = sorted(steps)
    return [(a[2], b[2]) for a, b in zip(ordered, ordered[1:], strict=False) if b[0] < a[1] - 0.01]


def ledger_lines(landing_dir: Path) -> list[dict[str, Any]]:
    folder = landing.table_dir(landing_dir, "ledger", "deliveries")
    return [
        json.loads(line)
        for path in sorted(folder.glob("run-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def run_both_tiers(tmp_path: Path) -> tuple[list[dict[str, Any]], str, Path, int]:
    """The hours and the seconds tier launched together on a fresh home: the runs, dagster
    dev's log, the landing folder and how many messages the sandbox received."""
    home = tmp_path / "home"
    seed(home / "landing")
    # The providers answer in half a second: the runs' send steps last, so the two runs overlap
    with Sandbox(latency_seconds=0.5) as sandbox:
        env = {
            "SWITCHYARD_HOME": str(home),
            "SWITCHYARD_CHANNELS": "sandbox",
            "SWITCHYARD_CHANNELS_BASE_URL": sandbox.base_url,
        }
        with dagster_dev(tmp_path / "dagster_home", env=env) as dev:
            # the longer run first (it builds every model the hours tier reads)
            ids = [dev.launch("tier_hours"), dev.launch("tier_seconds")]
            deadline = time.monotonic() + 780
            runs = dev.runs(ids)
            while not all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
                assert time.monotonic() < deadline, f"the runs did not finish: {runs}"
                time.sleep(1)
                runs = dev.runs(ids)
        log = (tmp_path / "dagster_home" / "dagster_dev.log").read_text(errors="replace")
        return runs, log, home / "landing", len(sandbox.received)


def pool_steps_of(runs: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """The runs' warehouse steps: (start, end, 'job:step')."""
    return [
        (s["startTime"], s["endTime"], f"{r['jobName']}:{s['stepKey']}")
        for r in runs
        for s in r["stepStats"]
        if s["startTime"] and s["stepKey"].startswith(POOL_STEPS)
    ]


def interleaved(steps: list[tuple[float, float, str]]) -> bool:
    """The two runs' warehouse steps took turns: one of the run that began second started
    before the last of the other's ended (both runs were out, wanting the warehouse, at once)."""
    ordered = sorted(steps)
    first = ordered[0][2].split(":")[0]
    last_end = max(end for _, end, name in ordered if name.startswith(f"{first}:"))
    return any(start < last_end for start, _, name in ordered if not name.startswith(f"{first}:"))


def assert_the_cap_held(landing_dir: Path, received: int) -> None:
    """One message a day per person, whichever journey's run came first; the other's step for
    them was capped (deferred to when the cap allows), not sent."""
    lines = ledger_lines(landing_dir)
    sent: dict[str, list[str]] = {}
    for line in lines:
        if line["status"] == "sent":
            sent.setdefault(line["person_id"], []).append(line["journey"])
    assert sent and all(len(journeys) == 1 for journeys in sent.values()), sent
    capped = {(ln["journey"], ln["person_id"]) for ln in lines
              if ln["status"] == "deferred" and ln["reason"] == "capped"}  # fmt: skip
    assert {p for _, p in capped} & set(sent), "no step met the cap"
    assert received == sum(
        1 for journeys in sent.values() for j in journeys if j == "cart_abandonment"
    )


@pytest.mark.slow
def test_the_daemon_runs_two_tiers_at_once_without_lock_errors_or_a_broken_cap(
    tmp_path: Path,
) -> None:
    # On a busy machine the second run's steps can all come after the first run's (nothing
    # tested): then the two are launched again on a fresh home, up to three times. Every attempt
    # must succeed, without a lock error, and keep the cap.
    for attempt in range(3):
        runs, log, landing_dir, received = run_both_tiers(tmp_path / f"attempt-{attempt}")
        assert {r["jobName"]: r["status"] for r in runs} == {
            "tier_seconds": "SUCCESS",
            "tier_hours": "SUCCESS",
        }, log[-5000:]
        assert "Could not set lock" not in log
        assert_the_cap_held(landing_dir, received)
        pool_steps = pool_steps_of(runs)
        assert {name.split(":")[0] for _, _, name in pool_steps} == {"tier_seconds", "tier_hours"}
        assert overlaps(pool_steps) == []  # never two warehouse steps at once
        if interleaved(pool_steps):
            break
        warnings.warn(
            f"attempt {attempt}: one run's warehouse steps all came after the other's "
            f"{sorted(pool_steps)}",
            stacklevel=1,
        )
    # the two runs wanted the warehouse at once, and their steps took turns
    assert interleaved(pool_steps), "the runs' warehouse steps never met in three tries"
