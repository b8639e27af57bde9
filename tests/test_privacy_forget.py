"""`switchyard forget`: after it, no file under the home and no table of the warehouse holds any
of the person's identifiers, names or phone spellings, while another person's data is intact
and the ledger and journey counts are what they were."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from activations import ledger, transitions
from activations.inbox.store import message_row
from activations.ledger.keys import SendRef
from activations.syncs import results
from switchyard import events, landing, publish
from switchyard.privacy import tombstones
from switchyard.privacy.forget import forget
from switchyard.privacy.subject import Request
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, Scenario

MODELS = (
    "+dim_people", "+fct_deliveries", "+fct_message_engagement", "+fct_journey_entries",
    "+fct_journey_transitions", "+fct_inbox_messages", "+stg_preferences__suppressions",
    "+dim_sync_state", "int_identity_anchor_links",
)  # fmt: skip
# Everything of Adelheid's a file could still hold: identifiers, spellings, name, message text.
ADELHEID = (
    "adelheid.lovelace",
    "adelheid-7",
    "dev-adelheid",
    "4155550101",
    "555-0101",
    "Adelheid",
    "fcm-adelheid",
    "Tips for Adelheid",
)
COUNTS = {
    "deliveries": "select count(*) as n from fct_deliveries",
    "transitions": "select count(*) as n from fct_journey_transitions",
    "sent": "select count(*) as n from fct_deliveries where delivery_status = 'sent'",
}


def person_scenario(paths: Paths) -> None:
    s = Scenario(paths.landing)
    s.track("cart_updated", T0 - timedelta(days=3), anonymous_id="dev-adelheid", sku="sku-1")
    s.person("adelheid-7", devices=("dev-adelheid", "dev-family"),
             email="Adelheid.Lovelace@Example.com ",
             phone="(415) 555-0101", first_name="Adelheid", push_token="fcm-adelheid",
             consent=("email", "sms"))  # fmt: skip
    s.opt_out("adelheid-7", "sms", T0 - timedelta(hours=5))
    s.orders.append({"order_id": "o-1", "user_id": "adelheid-7",
                     "email": "adelheid.lovelace@example.com", "order_total": 42.5,
                     "currency": "EUR", "order_status": "completed",
                     "ordered_at": T0.isoformat()})  # fmt: skip
    s.person("bob-builder", devices=("dev-bob", "dev-family"), email="bob.builder@example.com",
             first_name="Bobby", consent=("email",), when=T0 - timedelta(hours=2))  # fmt: skip
    # the family tablet, and an order Bob placed with her address: his, kept, her address blanked
    s.orders.append({"order_id": "o-bob", "user_id": "bob-builder",
                     "email": "adelheid.lovelace@example.com", "order_total": 9.0,
                     "currency": "EUR", "order_status": "completed",
                     "ordered_at": T0.isoformat()})  # fmt: skip
    s.land()
    landing.write_batch(paths.landing, "segment", "rejects", [
        {"message_id": "bad-1", "source": "segment", "reject_reason": "no type",
         "payload": '{"traits": {"email": "ADELHEID.LOVELACE@example.com"}, oops'},
        {"message_id": "bad-2", "source": "segment", "reject_reason": "no type",
         "payload": '{"traits": {"email": "bob.builder@example.com"}}'},
    ], prefix="test")  # fmt: skip
    landing.write_batch(paths.landing, "preferences", "suppressions", [
        events.suppression("s-1", "email", "adelheid.lovelace@example.com", "suppressed", "all",
                           "bounce", "sendgrid", T0),
        events.suppression("s-2", "email", "bob.builder@example.com", "suppressed", "all",
                           "bounce", "sendgrid", T0),
    ], prefix="test")  # fmt: skip


def sends(paths: Paths, people: dict[str, str]) -> None:
    """A sent email to each person, with feedback and an inbox message, a journey entry and a
    sync result, as the sender, the inbox, the tick and a sync land them."""
    writer = ledger.LedgerWriter(paths.landing, "r1")
    inbox, feedback = [], []
    with duckdb.connect() as con:
        for n, (user, person) in enumerate(sorted(people.items())):
            name = "Adelheid" if user.startswith("adelheid") else "Bobby"
            ref = SendRef(f"k-{n}", "welcome", "tips", person, f"e-{n}")
            for status in ("attempted", "sent"):
                writer.write(ref, status, T0, channel="email", recipient=f"{user}@mail.test",  # type: ignore[arg-type]
                             subject=f"Tips for {name}", body=f"Hi {name}")  # fmt: skip
            inbox.append(
                message_row(ref.send_key, user, "Hello", f"Hi {name}", "welcome", "tips", T0)
            )
            feedback.append(
                events.feedback_event(f"f-{n}", ref.send_key, "sendgrid", "email", "open", T0)
            )
            con.execute(
                "create or replace table t as select 'welcome' as journey, ? as entry_id, "
                "? as person_id, 0 as seq, null as from_node, 'tips' as node, ?::timestamp as "
                "reached_at, null as next_at, ?::timestamp as entered_at, 'treatment' as arm, "
                "'entered' as reason, null as detail, ? as properties, 'r1' as run_id, "
                "?::timestamp as recorded_at, 'v1' as journey_version",
                [f"e-{n}", person, T0, T0, json.dumps({"name": name}), T0],
            )
            transitions.append(con, "t", paths.landing, "tick-test")
            con.execute(
                "create or replace table r as select 'braze_people' as sync, 'braze' as "
                "destination, ? as key, 'added' as change, 'upsert' as op, 'h' as row_hash, ? as "
                "payload, 'synced' as outcome, null as reason, 1 as attempt, 'r1' as run_id, "
                "?::timestamp as recorded_at",
                [user, json.dumps({"first_name": name}), T0],
            )
            results.append(con, "r", paths.landing, "r1")
    writer.close()
    landing.write_batch(paths.landing, "inbox", "messages", inbox, prefix="run")
    landing.write_batch(paths.landing, "feedback", "events", feedback, prefix="test")


def files_holding(root: Path, needles: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            hits = [n for n in needles if n.lower().encode() in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def counts(paths: Paths) -> dict[str, int]:
    return {name: int(query(paths, sql)[0]["n"]) for name, sql in COUNTS.items()}


@pytest.fixture(scope="module")
def forgotten(module_paths: Paths) -> tuple[Paths, dict[str, int], object]:
    paths = module_paths
    person_scenario(paths)
    dbt_build(paths, *MODELS, command="run")
    people = {
        r["user_id"]: r["person_id"]
        for r in query(paths, "select user_id, person_id from dim_people")
    }
    sends(paths, people)
    dbt_build(paths, *MODELS, command="run")
    publish.publish(paths.duckdb)
    held = files_holding(paths.home, ADELHEID)  # the scenario did put her everywhere:
    assert {"switchyard.duckdb", "published/switchyard.duckdb"} < set(held) and len(held) >= 10
    before = counts(paths)
    request = Request("email", " ADELHEID.lovelace@example.com")
    with pytest.MonkeyPatch.context() as mp:  # stopped after the warehouse purge...

        def disk_full(warehouse: Path) -> None:
            raise OSError("no space left while publishing")

        mp.setattr(publish, "publish", disk_full)
        with pytest.raises(OSError):
            forget(paths, request, "req-1")
    done = forget(paths, request, "req-1")  # ... and resumed: it finds nobody, and finishes
    return paths, before, done


def test_nothing_of_the_person_is_left_in_any_file(
    forgotten: tuple[Paths, dict[str, int], object],
) -> None:
    paths, _, done = forgotten
    assert files_holding(paths.home, ADELHEID) == {}
    # the other person is all there: landing, warehouse, published copy
    bob = files_holding(paths.home, ("bob.builder", "Bobby", "dev-bob"))
    assert {"switchyard.duckdb", "published/switchyard.duckdb"} <= set(bob)
    assert any(p.startswith("landing/segment/events") for p in bob)
    assert any(p.startswith("landing/segment/rejects") for p in bob)
    people = query(paths, "select user_id from dim_people")
    assert [p["user_id"] for p in people] == ["bob-builder"]
    assert done.complete  # type: ignore[attr-defined]
    # Bob's rows on the shared tablet, and his order with her address, are his: kept
    orders = query(paths, "select order_id, user_id, email from stg_shop__orders")
    assert orders == [{"order_id": "o-bob", "user_id": "bob-builder", "email": None}]
    events = query(
        paths, "select count(*) as n from stg_segment__events where user_id = 'bob-builder'"
    )
    assert events[0]["n"] == 2  # one identify per device
    landed_bob = [json.loads(line) for p in (paths.landing / "segment/events").glob("*.jsonl")
                  for line in p.read_text().splitlines() if "bob-builder" in line]  # fmt: skip
    assert len(landed_bob) == 2


def test_counts_stay_as_they_were_once_rebuilt(
    forgotten: tuple[Paths, dict[str, int], object],
) -> None:
    paths, before, _ = forgotten
    dbt_build(paths, *MODELS, command="run")
    assert counts(paths) == before
    pseudonymous = query(
        paths, "select distinct person_id from fct_deliveries where person_id like 'forgotten_%'"
    )
    assert len(pseudonymous) == 1
    assert files_holding(paths.home, ADELHEID) == {}  # the rebuild brought nothing back


def test_the_tombstone_holds_hashes_and_counts_only(
    forgotten: tuple[Paths, dict[str, int], object],
) -> None:
    paths, _, done = forgotten
    stone = tombstones.Tombstone.read(paths.landing / "privacy/forgotten/req-1.json")
    assert stone.completed_at and stone.hashes
    key = tombstones.salt(paths.landing)
    assert tombstones.digest(key, "email:adelheid.lovelace@example.com") in stone.hashes
    assert tombstones.digest(key, "phone:+14155550101") in stone.hashes
    assert stone.stores["landing:segment/events"]["rows_removed"] >= 2
    assert stone.stores["landing:shop/orders"] == {
        "files": 1,
        "rows_removed": 1,
        "rows_redacted": 1,
    }
    assert stone.stores["warehouse:main.dim_people"] == {"rows_removed": 1}  # from the first run
    assert stone.stores["landing:ledger/deliveries"]["rows_redacted"] == 2
    assert stone.stores["landing:feedback/events"]["rows_removed"] == 1  # by her send key
    assert stone.stores["landing:inbox/messages"]["rows_removed"] == 1


def test_forgetting_again_is_harmless(forgotten: tuple[Paths, dict[str, int], object]) -> None:
    paths, _, _ = forgotten
    again = forget(paths, Request("email", "adelheid.lovelace@example.com"), "req-2")
    assert again.person_id is None and again.complete
    assert query(paths, "select count(*) as n from dim_people")[0]["n"] == 1


def test_new_events_are_dropped_at_intake_when_the_request_says_so(tmp_path: Path) -> None:
    # No warehouse needed: a request for someone the graph never held still blocks them.
    import httpx

    from intake import kafka
    from intake.collector import CollectorSettings, create_app
    from tests.servers import serving
    from tests.test_collector import KEYS, ROTATE, auth, closed_soon

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    kept_only = forget(paths, Request("email", "quiet@example.com"), "req-keep")
    assert kept_only.person_id is None and kept_only.complete
    dropping = forget(paths, Request("user_id", "gone-1"), "req-drop", drop_at_intake=True)
    assert dropping.complete

    def identify(message_id: str, **ids: object) -> dict[str, object]:
        return {"type": "identify", "messageId": message_id, **ids}

    with serving(create_app(CollectorSettings(paths.landing, KEYS, ROTATE))) as url:
        batch = [
            identify("m-gone", userId="gone-1", traits={"email": "x@example.com"}),
            identify("m-quiet", userId="u-q", traits={"email": " Quiet@Example.com"}),
            identify("m-other", userId="someone-else"),
        ]
        answer = httpx.post(f"{url}/v1/batch", json={"batch": batch}, headers=auth())
        assert answer.status_code == 200
        # "quiet" asked only to be forgotten: their new events still land (kept per the request)
        rows = closed_soon(paths.landing, {"m-quiet", "m-other"})
        assert "m-gone" not in {r["messageId"] for r in rows}
        assert httpx.get(f"{url}/health").json()["dropped_forgotten"] == 1
    summary = kafka.ConsumeSummary()
    kafka._land(paths.landing, [identify("k-gone", userId="gone-1"), identify("k-ok", userId="ok")],
                [], landing.write_batch, summary)  # fmt: skip
    assert summary.dropped_forgotten == 1


def test_the_sender_skips_a_forgotten_person_whatever_the_warehouse_says(
    forgotten: tuple[Paths, dict[str, int], object],
) -> None:
    # Run last in the module: it adds a ledger line.
    from activations import guards
    from sandbox import Sandbox
    from tests.test_delivery import entry, ledger_line, ref_for, run

    paths, _, _ = forgotten
    back = guards.Person("p-back", "someone-new", "Adelheid.Lovelace@example.com ", None, None,
                         "A", consent={"sms": "subscribed"})  # fmt: skip
    with Sandbox() as sandbox:
        summary = run(paths.landing, sandbox, entry("e-back", back), person=back)
        assert summary.skipped == {"suppressed": 1} and sandbox.received == []
    line = ledger_line(paths.landing, ref_for("e-back", person="p-back").send_key, "skipped")
    assert line["reason_detail"] == "forgotten: a deletion request names them"


def test_the_platforms_syncs_send_to_are_asked_to_delete_the_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox import Sandbox

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    with Sandbox() as sandbox:
        monkeypatch.setenv("SWITCHYARD_CHANNELS_BASE_URL", sandbox.base_url)
        sandbox.braze.users["gone-2"] = {"email": "gone@example.com"}
        sandbox.braze.users["stays"] = {"email": "stays@example.com"}
        done = forget(
            paths, Request("user_id", "gone-2"), "req-d", destinations=["braze", "iterable"]
        )
        assert sandbox.braze.deleted == ["gone-2"] and set(sandbox.braze.users) == {"stays"}
    assert done.stores["destination:braze"] == {"deleted": 1, "refused": 0}
    # Iterable never had them: it refuses, and that is an answer (the request is complete)
    assert done.stores["destination:iterable"] == {"deleted": 0, "refused": 1} and done.complete


def test_compacted_ledger_lines_are_pseudonymized_in_place(tmp_path: Path) -> None:
    from activations.ledger.compact import compact

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    writer = ledger.LedgerWriter(paths.landing, "r1")
    for n, name in ((1, "Xavier"), (2, "Yvonne")):
        ref = SendRef(f"k{n}", "welcome", "tips", f"p-{n}", f"e-{n}")
        for status in ("attempted", "sent"):
            writer.write(ref, status, T0, channel="email", recipient=f"{name}@mail.test",  # type: ignore[arg-type]
                         subject=f"Tips for {name}", body=f"Hi {name}")  # fmt: skip
    writer.close()
    compact(paths.landing)
    assert "landing/ledger/compacted" in {
        str(Path(p).parent) for p in files_holding(tmp_path, ("Xavier",))
    }
    done = forget(paths, Request("person_id", "p-1"), "req-x")
    assert files_holding(tmp_path, ("Xavier", "xavier@")) == {} and done.complete
    assert files_holding(tmp_path, ("Yvonne",))  # the other person's lines are untouched
    # the ledger reads as before: one attempt each, both sent, the first under a pseudonym
    state = ledger.read_state(paths.landing)
    # (its send key, a hash of the person id, is replaced too: it could be recomputed)
    (gone,) = set(state.last_status) - {"k2"}
    assert gone.startswith("forgotten_") and state.refs[gone].person_id.startswith("forgotten_")
    assert state.last_status == {gone: "sent", "k2": "sent"}
    assert state.attempts == {gone: 1, "k2": 1}
    with duckdb.connect() as con:  # the channel stays: caps and channel metrics count it
        lines = paths.landing / "ledger/compacted/lines-*.parquet"
        channels = con.execute(f"select distinct channel from read_parquet('{lines}')").fetchall()
    assert channels == [("email",)]


def test_forgetting_while_the_collector_lands_events_loses_no_other_event(tmp_path: Path) -> None:
    import threading

    import httpx

    from intake.collector import CollectorSettings, create_app
    from tests.servers import serving
    from tests.test_collector import KEYS, ROTATE, auth, closed_soon

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    sent: list[str] = []
    with serving(create_app(CollectorSettings(paths.landing, KEYS, ROTATE))) as url:

        def post_batches() -> None:
            with httpx.Client() as http:
                for b in range(40):
                    batch = [{"type": "track", "event": "viewed", "messageId": f"m{b}-{i}",
                              "userId": "gone-3" if i % 4 == 0 else f"u{b}-{i}"}
                             for i in range(8)]  # fmt: skip
                    assert (
                        http.post(
                            f"{url}/v1/batch", json={"batch": batch}, headers=auth()
                        ).status_code
                        == 200
                    )
                    sent.extend(m["messageId"] for m in batch if m["userId"] != "gone-3")

        poster = threading.Thread(target=post_batches)
        poster.start()
        while poster.is_alive():  # forgets racing the landing of new files
            forget(paths, Request("user_id", "gone-3"), "req-race")
        poster.join()
        rows = closed_soon(paths.landing, set(sent))
    forget(paths, Request("user_id", "gone-3"), "req-race")  # what landed after the last pass
    rows = [r for p in (paths.landing / "segment/events").glob("*.jsonl")
            for r in map(json.loads, p.read_text().splitlines())]  # fmt: skip
    ids = [r["messageId"] for r in rows]
    assert sorted(ids) == sorted(sent) and len(sent) == 40 * 6  # every other event, once
    assert not any(r.get("userId") == "gone-3" for r in rows)


def test_a_request_that_matches_nobody_removes_nothing(tmp_path: Path) -> None:
    # "2026" is in every timestamp: an id nobody has must not match text in other rows.
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    s = Scenario(paths.landing)
    s.person("carol", devices=("dev-c",), email="carol@example.com", phone="+14155550199")
    s.land()
    landing.write_batch(paths.landing, "segment", "rejects", [
        {"message_id": "bad-3", "source": "segment", "reject_reason": "no type",
         "payload": "2026-11-02 not json, +14155550199"},
    ], prefix="test")  # fmt: skip
    before = files_holding(tmp_path, ("carol", "2026", "4155550199"))
    done = forget(paths, Request("user_id", "2026"), "req-none")
    assert done.person_id is None and done.complete
    assert all(c["rows_removed"] == 0 for c in done.stores.values() if "rows_removed" in c)
    assert files_holding(tmp_path, ("carol", "2026", "4155550199")).keys() >= before.keys()


def test_a_sync_never_sends_a_forgotten_person_back_to_the_platform(tmp_path: Path) -> None:
    from activations.syncs import run_sync
    from activations.syncs.braze import BrazeDestination
    from sandbox import Sandbox
    from sandbox.credentials import SANDBOX_CREDENTIALS
    from tests.test_syncs import PEOPLE, Warehouse

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    warehouse = Warehouse(tmp_path / "people.duckdb", 3)
    forget(paths, Request("user_id", "u1"), "req-u1")  # forgotten before dbt caught up
    with Sandbox() as sandbox:
        with BrazeDestination(sandbox.base_url, SANDBOX_CREDENTIALS.braze_api_key) as braze:
            summary = run_sync(PEOPLE, warehouse.path, paths.landing, braze)
        assert set(sandbox.braze.users) == {"u0", "u2"}
    assert (summary.added, summary.held) == (2, 1)


def test_several_requests_are_forgotten_in_one_pass(tmp_path: Path) -> None:
    from switchyard.privacy.forget import forget_many

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    s = Scenario(paths.landing)
    for user in ("ann-1", "ben-2", "cid-3"):
        s.person(user, devices=(f"dev-{user}",), email=f"{user}@example.com")
        s.track("viewed", T0, user_id=user)
    s.land()
    done = forget_many(paths, [(Request("user_id", "ann-1"), "r-a"),
                               (Request("user_id", "ben-2"), "r-b")])  # fmt: skip
    assert [d.complete for d in done] == [True, True]
    assert files_holding(tmp_path, ("ann-1", "ben-2")) == {}
    assert files_holding(tmp_path, ("cid-3",))
    # one pass: both audits hold the batch's counts (the events file rewritten once)
    stones = [tombstones.Tombstone.read(d.tombstone) for d in done if d.tombstone]
    assert [st.stores["landing:segment/events"]["files"] for st in stones] == [1, 1]


@pytest.mark.parametrize("user", ["josé-1", 1234567])
def test_ids_written_escaped_or_as_numbers_are_found(user: object, tmp_path: Path) -> None:
    # A value written escaped (json.dumps writes é as \\u00e9) or as a number is found.
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    rows = [
        {"type": "track", "messageId": "m1", "userId": user, "event": "viewed"},
        {"type": "track", "messageId": "m2", "userId": "someone", "event": "viewed"},
    ]
    folder = landing.table_dir(paths.landing, "segment", "events")
    landing.write_batch(paths.landing, "segment", "events", rows, prefix="test")
    done = forget(paths, Request("user_id", str(user)), "req-esc")
    assert done.stores["landing:segment/events"]["rows_removed"] == 1
    (left,) = [
        json.loads(x) for p in folder.glob("test-*.jsonl") for x in p.read_text().splitlines()
    ]
    assert left["messageId"] == "m2"


@pytest.mark.parametrize("broken", [b"\xff\xfe not utf-8", b'{"userId": "gone"'])
def test_lines_that_are_not_text_or_not_json_are_kept_byte_for_byte(
    broken: bytes, tmp_path: Path
) -> None:
    # the screen cannot read a file that is not UTF-8: every line is parsed then, and a line
    # that does not parse stays as it was unless it holds one of the person's addresses
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    folder = landing.table_dir(paths.landing, "segment", "events")
    gone = json.dumps({"type": "track", "messageId": "m1", "userId": "gone", "event": "v"})
    kept = json.dumps({"type": "track", "messageId": "m2", "userId": "stays", "event": "v"})
    (folder / "mixed.jsonl").write_bytes(b"\n".join([gone.encode(), broken, kept.encode()]) + b"\n")
    done = forget(paths, Request("user_id", "gone"), "req-bytes")
    assert done.stores["landing:segment/events"]["rows_removed"] == 1
    assert (folder / "mixed.jsonl").read_bytes() == broken + b"\n" + kept.encode() + b"\n"


def test_a_file_closed_during_the_scan_is_parsed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sender holds its ledger file while the scan runs, writes the person's outcome after
    # it and closes: the scan never saw that line, so the file must be read whole
    from switchyard.privacy import landed

    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    earlier = ledger.LedgerWriter(paths.landing, "r0")  # a finished run: closed, scanned
    earlier.write(SendRef("k-bob", "welcome", "tips", "p-bob", "e-bob"), "sent", T0,
                  channel="email", recipient="bob@mail.test")  # type: ignore[arg-type]  # fmt: skip
    earlier.close()
    writer = ledger.LedgerWriter(paths.landing, "r1")
    ref = SendRef("k-alice", "welcome", "tips", "p-alice", "e-alice")
    writer.write(ref, "attempted", T0, channel="email", recipient="alice@mail.test")  # type: ignore[arg-type]
    scan, running = landed.screened_lines, [True]

    def scan_then_write(files: list[Path], target: landed.Target) -> object:
        found = scan(files, target)
        if running and any(f.parent.name == "deliveries" for f in files):
            writer.write(ref, "sent", T0, channel="email", recipient="alice@mail.test")  # type: ignore[arg-type]
            writer.close()
            running.clear()
        return found

    monkeypatch.setattr(landed, "screened_lines", scan_then_write)
    forget(paths, Request("person_id", "p-alice"), "req-race")
    assert not running and files_holding(tmp_path, ("alice@",)) == {}
    assert files_holding(tmp_path, ("bob@",))


def test_an_id_in_raw_utf8_that_case_folding_misses_is_found(tmp_path: Path) -> None:
    # RE2 folds İ (U+0130) to no lower-case form Python gives it: the value as given is looked
    # for too
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    folder = landing.table_dir(paths.landing, "segment", "events")
    rows = [{"type": "track", "messageId": "m1", "userId": "İlker-1", "event": "v"},
            {"type": "track", "messageId": "m2", "userId": "someone", "event": "v"}]  # fmt: skip
    (folder / "raw.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    done = forget(paths, Request("user_id", "İlker-1"), "req-i")
    assert done.stores["landing:segment/events"]["rows_removed"] == 1


def test_rows_the_graph_cannot_place_yet_wait_for_the_next_build(tmp_path: Path) -> None:
    # Her email beside user id u-1, and no warehouse yet to say whether u-1 is hers: the row
    # is kept whole (blanking the email would cut the only link to her other events) and the
    # request stays unfinished; after a build the same request id forgets all of u-1's rows.
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "w.duckdb")
    landing.ensure_layout(paths.landing)
    rows = [{"type": "identify", "messageId": "m-1", "userId": "u-1", "timestamp": T0.isoformat(),
             "traits": {"email": "Gone@Mail.test", "first_name": "Gwen"}},
            {"type": "track", "messageId": "m-2", "userId": "u-1", "event": "viewed",
             "timestamp": T0.isoformat(), "context": {"ip": "203.0.113.9"}},
            {"type": "track", "messageId": "m-3", "anonymousId": "a-3", "event": "viewed",
             "timestamp": T0.isoformat(), "context": {"traits": {"email": "gone@mail.test"}}},
            {"type": "track", "messageId": "m-4", "userId": "u-2", "event": "viewed",
             "timestamp": T0.isoformat()}]  # fmt: skip
    landing.write_batch(paths.landing, "segment", "events", rows, prefix="test")
    first = forget(paths, Request("email", "gone@mail.test"), "req-wait")
    assert not first.complete and "after the next dbt build" in first.busy[0]
    assert first.stores["landing:segment/events"]["rows_removed"] == 1  # the anonymous one
    assert files_holding(tmp_path, ("Gwen", "203.0.113.9"))
    assert tombstones.Forgotten(paths.landing).names({"email:gone@mail.test"})  # blocked
    dbt_build(paths, "+dim_people", "int_identity_anchor_links", command="run")
    second = forget(paths, Request("email", "gone@mail.test"), "req-wait")
    assert second.complete and second.person_id
    assert files_holding(tmp_path, ("Gwen", "203.0.113.9", "gone@")) == {}
    assert files_holding(tmp_path / "landing", ("m-4",))  # someone else's


@pytest.mark.parametrize("spelling", ["(415) 555-0101", "+1 415.555.0101", "4155550101"])
def test_a_phone_in_a_spelling_never_seen_before_is_found(spelling: str, tmp_path: Path) -> None:
    # no warehouse to know the spelling: the scan looks for the number's digits in order
    paths = Paths(home=tmp_path, landing=tmp_path / "landing", duckdb=tmp_path / "none.duckdb")
    landing.ensure_layout(paths.landing)
    rows = [{"type": "identify", "messageId": "m-1", "anonymousId": "a-1",
             "traits": {"phone": spelling}},
            {"type": "identify", "messageId": "m-2", "anonymousId": "a-2",
             "traits": {"phone": "(415) 555-0199"}}]  # fmt: skip
    landing.write_batch(paths.landing, "segment", "events", rows, prefix="test")
    done = forget(paths, Request("phone", "+1 415 555 0101"), "req-phone")
    assert done.stores["landing:segment/events"]["rows_removed"] == 1
    assert files_holding(tmp_path, ("0101",)) == {} and files_holding(tmp_path, ("0199",))
