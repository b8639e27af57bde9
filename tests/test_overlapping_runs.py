"""Runs of different journeys at the same time (two tiers overlapping, the CLI beside Dagster)
keep the global frequency cap: each reads the ledger after the other's sends, never between its
own read and its sends. Real run_journey calls in two threads, a real DuckDB warehouse file
(the tables dbt would build, written directly so the test runs in seconds), a sandbox that
answers slowly so the runs overlap."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from activations.channels import ChannelSettings
from activations.journeys import FrequencyCap, Journey, Step, Template
from activations.run import RunSummary, run_journey
from sandbox import Fault, Sandbox
from switchyard import landing

T = datetime(2026, 11, 2, 10, 0)
PEOPLE = 3


def journey(name: str, transactional: bool = False) -> Journey:
    return Journey(
        name=name,
        audience_model=f"audience_{name}",
        tier="seconds",
        nodes=(Step("remind", 0, ("sms",), {"sms": Template(body=f"{name}: hi {{first_name}}")}),),
        exit_on=(),
        frequency_cap=FrequencyCap(messages=1, per_hours=24),
        message_type="transactional" if transactional else "marketing",
    )


def build_warehouse(path: Path, journeys: list[Journey]) -> None:
    """What the runs read, with the columns dbt's models give them."""
    con = duckdb.connect(str(path))
    people = [(f"p{i}", f"u{i}", f"+1415555{i:04d}") for i in range(PEOPLE)]
    con.execute(
        "create table dim_people (person_id varchar, user_id varchar, email varchar, "
        "phone varchar, push_token varchar, first_name varchar, most_engaged_channel varchar, "
        "timezone varchar, email_consent varchar, sms_consent varchar, push_consent varchar)"
    )
    for person, user, phone in people:
        con.execute(
            "insert into dim_people values (?, ?, null, ?, null, 'Sam', null, null, null, "
            "'subscribed', null)",
            [person, user, phone],
        )
    for j in journeys:
        con.execute(
            f"create table {j.audience_model} (entry_id varchar, person_id varchar, "
            "enters_at timestamp, entry_properties varchar, exited_at timestamp)"
        )
        for person, _, _ in people:
            con.execute(
                f"insert into {j.audience_model} values (?, ?, ?, '{{}}', null)",
                [f"{j.name}-{person}", person, T - timedelta(minutes=5)],
            )
    con.execute(
        "create table int_events_stitched (person_id varchar, event_name varchar, "
        "occurred_at timestamp, event_type varchar)"
    )
    con.execute(
        "create table stg_feedback__events (send_key varchar, feedback_event varchar, "
        "occurred_at timestamp, reject_reason varchar)"
    )
    con.execute(
        "create table int_user_consents_current (user_id varchar, channel varchar, "
        "topic varchar, consent_status varchar, recorded_at timestamp)"
    )
    con.execute(
        "create table int_suppressions_current (channel varchar, address varchar, "
        "scope varchar, reason varchar)"
    )
    con.execute(
        "create table dim_person_aliases "
        "(alias_person_id varchar, person_id varchar, aliased_at timestamp, is_primary boolean)"
    )
    con.close()


def run_at_once(home: Path, sandbox: Sandbox, journeys: list[Journey]) -> list[RunSummary]:
    duckdb_path = home / "warehouse.duckdb"
    build_warehouse(duckdb_path, journeys)
    # Every text is answered a second late: each run is still sending when the other starts.
    sandbox.fail_next(Fault("twilio", count=PEOPLE * len(journeys), delay_seconds=1.0))
    summaries: list[RunSummary] = []
    errors: list[BaseException] = []
    uncounted = frozenset(j.name for j in journeys if j.transactional)

    def one(j: Journey) -> None:
        try:
            clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
            summaries.append(
                run_journey(j, duckdb_path=duckdb_path, landing_dir=home / "landing",
                            clients=clients, now=T, uncounted_journeys=uncounted)
            )  # fmt: skip
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(j,)) for j in journeys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return summaries


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path / "landing")
    return tmp_path


def test_two_journeys_running_at_once_keep_the_global_cap(home: Path) -> None:
    with Sandbox() as sandbox:
        summaries = run_at_once(home, sandbox, [journey("cart"), journey("welcome")])
        texts = sorted(r.recipient for r in sandbox.received)
    # One message per person across both journeys (the cap: 1 per 24 h); the other waits.
    assert texts == sorted(f"+1415555{i:04d}" for i in range(PEOPLE))
    assert sum(sum(s.sent.values()) for s in summaries) == PEOPLE
    assert sum(s.deferred["capped"] for s in summaries) == PEOPLE


def test_a_transactional_journey_running_beside_one_is_not_capped_nor_counted(home: Path) -> None:
    with Sandbox() as sandbox:
        summaries = run_at_once(home, sandbox, [journey("cart"), journey("receipts", True)])
        bodies = sorted(r.body or "" for r in sandbox.received)
    assert len(bodies) == 2 * PEOPLE  # a receipt and a reminder each
    assert sum(sum(s.sent.values()) for s in summaries) == 2 * PEOPLE
