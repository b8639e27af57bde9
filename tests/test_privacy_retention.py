"""Retention: what is past its declared window goes (or has its personal columns emptied), and
exactly that: a row a day inside the window stays, ledger lines and transitions are never
removed, and a second run finds nothing left to do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from activations import ledger, transitions
from activations.ledger.compact import compact
from activations.ledger.keys import SendRef
from switchyard import landing, publish
from switchyard.privacy.retention import Policy, RetentionError, Rule, enforce, load_policy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = Policy(
    landing={
        "segment/events": (Rule(396, "timestamp"),),
        "segment/rejects": (Rule(90, "rejected_at"),),
        "ledger/deliveries": (
            Rule(30, "recorded_at", ("subject", "body")),
            Rule(396, "recorded_at", ("recipient",)),
        ),
        "ledger/deliveries_compacted": (Rule(30, "recorded_at", ("subject", "body")),),
        "journeys/transitions": (Rule(396, "recorded_at", ("properties", "detail")),),
    },
    tables={"main.int_events_stitched": (Rule(396, "occurred_at"),)},
)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event(n: int, days: float) -> dict[str, Any]:
    return {"type": "track", "messageId": f"m-{n}", "event": "viewed", "userId": f"u-{n}",
            "timestamp": iso(ago(days)), "traits": {"email": f"person{n}@mail.test"}}  # fmt: skip


def lines(folder: Path) -> list[Any]:
    found = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append(line)
    return found


def write_ledger(landing_dir: Path, run: str, days: tuple[float, ...]) -> None:
    writer = ledger.LedgerWriter(landing_dir, run)
    for n, age in enumerate(days):
        ref = SendRef(f"{run}-k{n}", "welcome", "tips", f"p-{n}", f"e-{n}")
        message = {"recipient": f"r{n}@mail.test", "subject": f"Subject {n}", "body": f"Body {n}"}
        writer.write(ref, "sent", ago(age).replace(tzinfo=None), channel="email", **message)
    writer.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing_dir = tmp_path / "landing"
    landing.ensure_layout(landing_dir)
    landing.write_batch(landing_dir, "segment", "events",
                        [event(1, 397), event(2, 395), event(3, 10)], prefix="a")  # fmt: skip
    # an old file all past its window, one line that is not JSON, one without a time
    landing.write_batch(landing_dir, "segment", "events", [event(4, 500), event(5, 800)], "b")
    with (landing_dir / "segment/events/c-mixed.jsonl").open("w") as fh:
        fh.write('{"broken\n' + json.dumps({**event(6, 900), "timestamp": None}) + "\n")
        fh.write(json.dumps(event(7, 900)) + "\n")
    landing.write_batch(landing_dir, "segment", "rejects", [
        {"rejected_at": iso(ago(91)), "reason": "no_id", "payload": "old@mail.test"},
        {"rejected_at": iso(ago(89)), "reason": "no_id", "payload": "new@mail.test"},
    ], prefix="r")  # fmt: skip
    write_ledger(landing_dir, "old", (400, 31))
    compact(landing_dir)  # these two are in the compacted Parquet now
    write_ledger(landing_dir, "new", (400, 31, 29))
    with duckdb.connect() as con:
        con.execute(
            "create table t as select 'welcome' as journey, 'e-' || i as entry_id, "
            "'p-' || i as person_id, 0 as seq, null as from_node, 'tips' as node, "
            "ts as reached_at, null as next_at, ts as entered_at, 'treatment' as arm, "
            "'entered' as reason, 'why ' || i as detail, '{\"sku\": 1}' as properties, "
            "'r1' as run_id, ts as recorded_at, 'v1' as journey_version from (values "
            "(1, ?::timestamp), (2, ?::timestamp)) as v(i, ts)",
            [ago(397).replace(tzinfo=None), ago(395).replace(tzinfo=None)],
        )
        transitions.append(con, "t", landing_dir, "tick-test")
    return tmp_path


def test_rows_past_the_window_go_and_the_day_inside_stays(home: Path) -> None:
    done = enforce(home / "landing", None, POLICY, NOW)
    kept = lines(home / "landing/segment/events")
    ids = [r.get("messageId") for r in kept if isinstance(r, dict)]
    # 397 days old goes, 395 stays; the undated row and the text that does not parse stay
    assert sorted(ids) == ["m-2", "m-3", "m-6"] and '{"broken' in kept
    assert not list((home / "landing/segment/events").glob("b-*.jsonl"))  # emptied: deleted
    assert done.stores["landing:segment/events"] == {
        "files": 3, "rows_removed": 4, "rows_redacted": 0, "undated": 1,
    }  # fmt: skip
    assert [r["payload"] for r in lines(home / "landing/segment/rejects")] == ["new@mail.test"]


def test_ledger_lines_stay_with_their_bodies_emptied(home: Path) -> None:
    enforce(home / "landing", None, POLICY, NOW)
    rows = {r["send_key"]: r for r in lines(home / "landing/ledger/deliveries")}
    # nothing removed (exactly-once and the caps read these); the compacted run's file, still
    # readable for a while after the compaction, is redacted as well
    assert set(rows) == {"new-k0", "new-k1", "new-k2", "old-k0", "old-k1"}
    assert rows["old-k1"]["subject"] is None and rows["old-k1"]["recipient"] == "r1@mail.test"
    assert rows["new-k0"]["subject"] is None and rows["new-k0"]["recipient"] is None
    assert rows["new-k1"]["subject"] is None and rows["new-k1"]["recipient"] == "r1@mail.test"
    assert rows["new-k2"]["subject"] == "Subject 2" and rows["new-k2"]["body"] == "Body 2"
    assert {r["status"] for r in rows.values()} == {"sent"}
    compacted = home / "landing/ledger/compacted"
    with duckdb.connect() as con:
        found = con.execute(
            f"select send_key, subject, recipient from read_parquet('{compacted}/lines-*.parquet') "
            "order by 1"
        ).fetchall()
        (meta,) = con.execute(
            f"select count(*) from parquet_kv_metadata('{compacted}/lines-*.parquet') "
            "where decode(key) = 'source_files'"
        ).fetchone() or (0,)
    assert found == [("old-k0", None, "r0@mail.test"), ("old-k1", None, "r1@mail.test")]
    assert meta == 1  # the compaction's own record of its run files survives the rewrite
    assert ledger.read_state(home / "landing").last_status["old-k0"] == "sent"


def test_transitions_keep_their_rows_and_lose_what_they_copied(home: Path) -> None:
    done = enforce(home / "landing", None, POLICY, NOW)
    folder = home / "landing/journeys/transitions"
    with duckdb.connect() as con:
        found = con.execute(
            f"select entry_id, detail, properties from read_parquet('{folder}/tick-*.parquet') "
            "order by 1"
        ).fetchall()
    assert found == [("e-1", None, None), ("e-2", "why 2", '{"sku": 1}')]
    assert done.stores["landing:journeys/transitions"]["rows_redacted"] == 1


def test_a_second_run_and_a_dry_run_change_nothing(home: Path) -> None:
    before = {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()}
    dry = enforce(home / "landing", None, POLICY, NOW, dry_run=True)
    assert {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()} == before
    assert dry.path is None and dry.rows_removed == 5, dry.stores  # 4 events, 1 reject
    done = enforce(home / "landing", None, POLICY, NOW)
    assert (done.rows_removed, done.rows_redacted) == (dry.rows_removed, dry.rows_redacted)
    again = enforce(home / "landing", None, POLICY, NOW)
    assert again.rows_removed == again.rows_redacted == 0
    assert not any(s["files"] for s in again.stores.values())


def test_the_report_says_what_went_without_personal_data(home: Path) -> None:
    done = enforce(home / "landing", None, POLICY, NOW)
    assert done.path is not None
    text = Path(done.path).read_text()
    report = json.loads(text)
    assert report["stores"]["landing:segment/rejects"]["rows_removed"] == 1
    assert report["policy"]["segment/events"] == ["remove rows older than 396 days by timestamp"]
    assert "mail.test" not in text and "Subject" not in text


def test_declared_models_are_trimmed_in_the_warehouse_and_its_file(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create table int_events_stitched as select 'ev-' || i as event_id, "
            "'secret-' || i || '@mail.test' as email, ts as occurred_at from (values "
            "(1, ?::timestamp), (2, ?::timestamp)) as v(i, ts)",
            [ago(400).replace(tzinfo=None), ago(10).replace(tzinfo=None)],
        )
        con.execute("create table other as select 'secret-1@mail.test' as kept")
    publish.publish(warehouse)
    done = enforce(tmp_path / "landing", warehouse, POLICY, NOW)
    assert done.stores["warehouse:main.int_events_stitched"]["rows_removed"] == 1
    with duckdb.connect(str(publish.published_path(warehouse)), read_only=True) as con:
        assert con.execute("select event_id from int_events_stitched").fetchall() == [("ev-2",)]
        assert con.execute("select count(*) from other").fetchone() == (1,)  # not declared
    # no freed block keeps the removed row: only the undeclared table's copy of the value is left
    assert warehouse.read_bytes().count(b"secret-1@mail.test") == 1


def manifest(tmp_path: Path, sources: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({
        "sources": {f"s{n}": {"original_file_path": "x.yml", "source_meta": {}, **s}
                    for n, s in enumerate(sources)},
        "nodes": {f"n{n}": {"resource_type": "model", "original_file_path": "y.yml",
                            "schema": "main", **m} for n, m in enumerate(nodes)},
    }))  # fmt: skip
    return path


def test_the_project_declares_its_windows() -> None:
    from orchestration.dbt_project import ensure_manifest

    policy = load_policy(ensure_manifest())
    assert policy.landing["segment/events"] == (Rule(396, "timestamp"),)  # the source's default
    assert policy.landing["segment/rejects"] == (Rule(90, "rejected_at"),)  # the table's own
    assert all(r.redact for r in policy.landing["ledger/deliveries"])
    assert policy.tables["main.int_events_stitched"] == (Rule(396, "occurred_at"),)


@pytest.mark.parametrize(
    ("source", "node", "message"),
    [
        ({"source_name": "ledger", "name": "deliveries", "meta": {"retention": {"days": 30}},
          "loaded_at_field": "recorded_at"}, None, "never removed; declare `redact"),
        ({"source_name": "segment", "name": "events", "meta": {"retention": {"days": 0}},
          "loaded_at_field": "timestamp"}, None, "whole number >= 1"),
        ({"source_name": "segment", "name": "events", "meta": {"retention": {"days": 9}}},
         None, "needs `by:`"),
        ({"source_name": "cdp", "name": "tracks", "meta": {"retention": {"days": 9, "by": "t"}}},
         None, "landing tables only"),
        ({"source_name": "segment", "name": "events",
          "meta": {"retention": {"days": 9, "keep": "t"}}}, None, "is not a rule"),
        (None, {"name": "stg_x", "config": {"materialized": "view",
                                            "meta": {"retention": {"days": 9, "by": "t"}}}},
         "a view stores nothing"),
    ],
)  # fmt: skip
def test_a_wrong_declaration_names_where_and_what_is_allowed(
    tmp_path: Path, source: dict[str, Any] | None, node: dict[str, Any] | None, message: str
) -> None:
    path = manifest(tmp_path, [source] if source else [], [node] if node else [])
    with pytest.raises(RetentionError, match=message):
        load_policy(path)


def test_an_unquoted_on_key_is_refused_with_the_right_name(tmp_path: Path) -> None:
    # YAML 1.1 reads `on:` as true (dbt then hangs logging the meta): the key is `by:`
    unquoted = {"retention": {"days": 9, "true": "receivedAt"}}
    path = manifest(tmp_path, [{"source_name": "segment", "name": "events", "meta": unquoted}], [])
    with pytest.raises(RetentionError, match="named with `by:`"):
        load_policy(path)


def test_a_column_the_table_lacks_is_named(home: Path) -> None:
    wrong = Policy({"journeys/transitions": (Rule(9, "recorded_at", ("cart",)),)}, {})
    with pytest.raises(RetentionError, match="cart, which it does not have"):
        enforce(home / "landing", None, wrong, NOW)


def test_a_send_not_settled_keeps_its_message(home: Path) -> None:
    # an attempt without an outcome may still be sent once more (reconciled): its body stays
    writer = ledger.LedgerWriter(home / "landing", "doubt")
    ref = SendRef("doubt-k", "welcome", "tips", "p-9", "e-9")
    writer.write(ref, "attempted", ago(40).replace(tzinfo=None), channel="email",
                 recipient="r9@mail.test", subject="Subject 9", body="Body 9")  # fmt: skip
    writer.close()
    enforce(home / "landing", None, POLICY, NOW)
    rows = {r["send_key"]: r for r in lines(home / "landing/ledger/deliveries")}
    assert rows["doubt-k"]["body"] == "Body 9" and rows["new-k1"]["body"] is None


def test_the_days_tier_asset_enforces_the_project_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from orchestration.defs.privacy import privacy_retention
    from orchestration.defs.resources import WarehouseResource

    monkeypatch.setenv("SWITCHYARD_HOME", str(tmp_path))
    for name in ("SWITCHYARD_LANDING_DIR", "SWITCHYARD_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    landing.ensure_layout(tmp_path / "landing")
    now = datetime.now(UTC)
    old, recent = event(1, 0), event(2, 0)
    old["timestamp"], recent["timestamp"] = iso(now - timedelta(days=400)), iso(now)
    landing.write_batch(tmp_path / "landing", "segment", "events", [old, recent])
    result = dg.materialize([privacy_retention], resources={"warehouse": WarehouseResource()})
    (materialized,) = result.asset_materializations_for_node(privacy_retention.op.name)
    assert materialized.metadata["rows_removed"].value == 1
    assert [r["messageId"] for r in lines(tmp_path / "landing/segment/events")] == ["m-2"]
    assert list((tmp_path / "landing/privacy/retention").glob("run-*.json"))


def test_a_built_warehouse_keeps_no_event_past_the_window_after_the_next_build(
    tmp_path: Path,
) -> None:
    # base_segment__events loads each file once, stg_segment__events and int_events_stitched
    # are incremental, and stitching reads the staged events again when an identity changes:
    # every one of them must let the old event go, and the next build must not bring it back
    from orchestration.dbt_project import ensure_manifest
    from switchyard.settings import Paths
    from tests.dbt_helpers import dbt_build, query

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "w.duckdb")
    landing.ensure_layout(paths.landing)
    now = datetime.now(UTC)
    old = {"type": "track", "messageId": "m-old", "anonymousId": "anon-1", "event": "viewed",
           "timestamp": iso(now - timedelta(days=400))}  # fmt: skip
    recent = {**old, "messageId": "m-new", "timestamp": iso(now - timedelta(days=1))}
    landing.write_batch(paths.landing, "segment", "events", [old, recent])
    dbt_build(paths, "+int_events_stitched", command="run")
    done = enforce(paths.landing, paths.duckdb, load_policy(ensure_manifest()), now)
    assert done.stores["landing:segment/events"]["rows_removed"] == 1
    # the anonymous id becomes a user's: its events are stitched again at the next build
    identify = {"type": "identify", "messageId": "m-id", "anonymousId": "anon-1",
                "userId": "u-1", "timestamp": iso(now)}  # fmt: skip
    landing.write_batch(paths.landing, "segment", "events", [identify])
    dbt_build(paths, "+int_events_stitched", command="run")
    for table in ("base_segment__events", "stg_segment__events", "int_events_stitched"):
        column = '"messageId"' if table.startswith("base") else "event_id"
        ids = {r["id"] for r in query(paths, f"select {column} as id from {table}")}
        assert "m-old" not in ids and "m-new" in ids, table
    stitched = query(paths, "select person_id from int_events_stitched where event_id = 'm-new'")
    assert stitched[0]["person_id"] is not None


def test_a_declaration_the_warehouse_refuses_stops_before_any_file_changes(
    home: Path, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table int_events_stitched as select 'ev-1' as event_id")
    before = {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()}
    with pytest.raises(RetentionError, match="occurred_at, which it does not have"):
        enforce(home / "landing", warehouse, POLICY, NOW)
    assert {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()} == before


def test_a_run_stopped_part_way_reports_what_it_changed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchyard.privacy import landed

    rewrite, calls = landed.rewrite_jsonl, []

    def second_file_fails(path: Path, *args: object, **kwargs: object) -> landed.Done:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return rewrite(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(landed, "rewrite_jsonl", second_file_fails)
    events = Policy({"segment/events": POLICY.landing["segment/events"]}, {})
    with pytest.raises(OSError, match="disk full"):
        enforce(home / "landing", None, events, NOW)
    (report,) = (home / "landing/privacy/retention").glob("run-*.json")
    counts = json.loads(report.read_text())["stores"]["landing:segment/events"]
    assert counts["files"] == 1 and counts["rows_removed"] >= 1
