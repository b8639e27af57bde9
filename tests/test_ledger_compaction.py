"""Ledger compaction: run files into Parquet and one keys file, with every reader (a run's state,
caps simulate, dbt's staging) seeing exactly what it saw before, each line once."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from activations import ledger
from activations.caps_simulate import CapPolicy, simulate
from activations.ledger import store
from activations.ledger.compact import GRACE_SECONDS, Compaction, compact
from activations.ledger.compact import _compact as compact_unlocked
from activations.ledger.reader import CLOCK_SKEW_MARGIN
from switchyard import landing
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query

T = datetime(2026, 11, 2, 10, 0)


def ref(n: int, person: str) -> ledger.SendRef:
    return ledger.SendRef(f"key-{n}", "cart", "remind", person, f"e{n}")


SMS = {"channel": "sms", "recipient": "+14155550123", "body": "Hi"}
EMAIL = {"channel": "email", "recipient": "p2@example.com", "subject": "Your cart", "body": "Hi"}


def write_run(home: Path, run_id: str, lines: list[tuple[int, str, str, dict[str, Any]]]) -> None:
    """lines: (key number, person, status, columns), one minute apart from T + the run's hour."""
    writer = ledger.LedgerWriter(home, run_id)
    start = T + timedelta(hours=int(run_id[-1]))
    for i, (n, person, status, columns) in enumerate(lines):
        writer.write(ref(n, person), status, start + timedelta(minutes=i), **columns)  # type: ignore[arg-type]
    writer.close()


RUN_A = [
    (1, "p1", "attempted", SMS),
    (1, "p1", "sent", {**SMS, "provider_message_id": "SM1"}),
    (2, "p2", "attempted", EMAIL),
    (2, "p2", "unknown", EMAIL),
    (3, "p1", "skipped", {"reason": "capped"}),
    (4, "p3", "deferred", {"reason": "capped", "reason_detail": "until later"}),
]
RUN_B = [
    (2, "p2", "attempted", {**SMS, "body": "Hi again"}),  # sent once more; no outcome (a crash)
    (4, "p3", "attempted", SMS),
    (4, "p3", "sent", {**SMS, "provider_message_id": "SM4"}),
    (5, "p1", "attempted", SMS),
    (5, "p1", "failed", {"reason": "outcome_unknown"}),
]
RUN_C = [
    (6, "p4", "attempted", SMS),
    (6, "p4", "sent", {**SMS, "provider_message_id": "SM6"}),
    (1, "p1", "skipped", {"reason": "exited"}),  # a late line about a compacted key
]


def seen(state: ledger.LedgerState) -> dict[str, Any]:
    """Everything a run reads from the state, order aside."""
    fields = dataclasses.asdict(state)
    fields["sends_by_person"] = {p: sorted(v) for p, v in state.sends_by_person.items()}
    return fields


def twins(tmp_path: Path) -> tuple[Path, Path]:
    """Two landing folders given the same lines: one compacted, one never."""
    plain, compacted = tmp_path / "plain", tmp_path / "compacted"
    for home in (plain, compacted):
        landing.ensure_layout(home)
    return plain, compacted


def write_run_ending(
    home: Path, run_id: str, lines: list[tuple[int, str, str, dict[str, Any]]], text: str
) -> Path:
    """A run's file as write_run writes it, then `text` (a cut line, a line without a key)."""
    before = set(store.run_files_dir(home).glob("run-*.jsonl"))
    write_run(home, run_id, lines)
    (path,) = set(store.run_files_dir(home).glob("run-*.jsonl")) - before
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return path


def history_then_newer_lines(home: Path, compacted: bool) -> None:
    """RUN_A and RUN_B, compacted or not, then RUN_C: lines the keys file does not cover."""
    landing.ensure_layout(home)
    write_run(home, "run-0", RUN_A)
    write_run(home, "run-1", RUN_B)
    if compacted:
        compact(home)
    write_run(home, "run-2", RUN_C)


def decided_rows(
    home: Path, entries: str | None, aliases: dict[str, list[str]] | None = None, **tables: Any
) -> list[tuple[str, str, bool]]:
    """(send_key, status, carried) of a tick's `decided` for `entries` (entry_id, entered_at),
    on a connection holding `tables` (Arrow tables `entries` may read)."""
    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        ledger.create_decided(con, home, "cart", aliases or {}, entries)
        return con.execute("select send_key, status, carried from decided").fetchall()
    finally:
        con.close()


def age(home: Path) -> None:
    """As if the compactions so far were GRACE_SECONDS ago: their run files may go now."""
    past = time.time() - GRACE_SECONDS - 1
    for path in store.generations(home, "lines").values():
        os.utime(path, (past, past))


def run_files(home: Path) -> set[str]:
    return {p.name for p in store.run_files_dir(home).glob("run-*.jsonl")}


def test_compaction_changes_nothing_a_reader_sees(tmp_path: Path) -> None:
    plain, compacted = twins(tmp_path)
    for home in (plain, compacted):
        write_run(home, "run-0", RUN_A)
    first = compact(compacted)
    assert (first.generation, first.run_files, first.lines) == (1, 1, len(RUN_A))
    # A compaction right after (one that waited on the lock) deletes nothing yet: a reader may
    # have listed the run file a moment before the first took it.
    assert compact(compacted) == Compaction(0, 0, 0, 0, 0) and len(run_files(compacted)) == 1
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))

    # Lines since a compaction fold into the keys they touch.
    for home in (plain, compacted):
        write_run(home, "run-1", RUN_B)
    state = ledger.read_state(compacted)
    assert seen(state) == seen(ledger.read_state(plain))
    assert state.last_status["key-2"] == "attempted" and state.attempts["key-2"] == 2
    # the latest attempt's message, whole: an SMS has no subject (not the email's before it)
    assert (state.pending["key-2"].channel, state.pending["key-2"].subject) == ("sms", None)
    assert state.pending["key-2"].body == "Hi again"
    # the first attempt (compacted) is where a provider lookup starts
    assert state.pending["key-2"].first_attempted_at == T + timedelta(minutes=2)

    age(compacted)
    second = compact(compacted)
    # Later, the first compaction's run file goes; the one just taken stays until the next.
    assert (second.generation, second.run_files, second.deleted) == (2, 1, 1)
    assert len(run_files(compacted)) == 1
    for home in (plain, compacted):
        write_run(home, "run-2", RUN_C)
    age(compacted)
    third = compact(compacted)
    assert third.deleted == 1 and len(run_files(compacted)) == 1
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))
    # and nothing left to do is no new generation
    assert compact(compacted).generation == 0
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))


def test_a_keys_file_from_before_refusals_were_counted_reads_as_none(tmp_path: Path) -> None:
    # A keys file compacted by an earlier version lacks the refusals column: read as 0, and a
    # refusal landed since still counts.
    plain, compacted = twins(tmp_path)
    for home in (plain, compacted):
        write_run(home, "run-0", RUN_A)
    compact(compacted)
    (keys_file,) = store.generations(compacted, "keys").values()
    con = duckdb.connect()
    path = f"'{keys_file}'"
    con.execute(
        f"copy (select * exclude (refusals) from {path}) to '{keys_file}.old' (format parquet)"
    )
    con.close()
    os.replace(f"{keys_file}.old", keys_file)
    refused = {"reason": "retrying", "reason_detail": "until later; HTTP 429", **SMS}
    for home in (plain, compacted):
        write_run(home, "run-1", [(6, "p4", "attempted", SMS), (6, "p4", "deferred", refused)])
    state = ledger.read_state(compacted)
    assert seen(state) == seen(ledger.read_state(plain))
    assert state.refused("key-6") and not state.refused("key-2") and "key-2" in state.pending


def test_a_keys_file_from_before_seen_at_bounds_nothing_until_a_compaction_fills_it_in(
    tmp_path: Path,
) -> None:
    # A keys file compacted by an earlier version lacks seen_at: its keys are read whatever the
    # bound, even one whose newer line is stamped days before the entry began (a run whose
    # clock was behind), and the next compaction takes seen_at from every lines file.
    landing.ensure_layout(tmp_path)
    began = T + timedelta(days=3)
    writer = ledger.LedgerWriter(tmp_path, "run-0")
    writer.write(ref(7, "p7"), "deferred", began, reason="quiet_hours", reason_detail="until")
    writer.write(ref(8, "p8"), "attempted", began, **SMS)
    writer.write(ref(8, "p8"), "sent", began, **SMS)
    writer.close()
    compact(tmp_path)
    (keys_file,) = store.generations(tmp_path, "keys").values()
    con = duckdb.connect()
    con.execute(
        f"copy (select * exclude (seen_at) from '{keys_file}') to '{keys_file}.old' "
        "(format parquet)"
    )
    con.close()
    os.replace(f"{keys_file}.old", keys_file)
    writer = ledger.LedgerWriter(tmp_path, "run-1")
    writer.write(ref(7, "p7"), "skipped", T, reason="exited")  # three days behind
    writer.close()

    def found() -> tuple[set[str], dict[str, str | None]]:
        entries = (
            f"select entry_id, timestamp '{began}' as entered_at "
            "from (values ('e7'), ('e8')) t(entry_id)"
        )
        decided = {key for key, *_ in decided_rows(tmp_path, entries)}
        state = ledger.read_state(tmp_path, keys=["key-7", "key-8"], keys_entered_since=began)
        return decided, {k: state.last_status.get(k) for k in ("key-7", "key-8")}

    both = ({"key-7", "key-8"}, {"key-7": "skipped", "key-8": "sent"})
    assert found() == both
    compact(tmp_path)
    keys_file = store.generations(tmp_path, "keys")[2]
    seen_at = dict(duckdb.execute(f"select send_key, seen_at from '{keys_file}'").fetchall())
    assert seen_at == {"key-7": began, "key-8": began}
    assert found() == both


def test_a_run_file_still_being_written_is_left_alone(tmp_path: Path) -> None:
    plain, compacted = twins(tmp_path)
    open_writers = [ledger.LedgerWriter(home, "run-open") for home in (plain, compacted)]
    for writer in open_writers:
        writer.write(ref(7, "p7"), "attempted", T, **SMS)
    for home in (plain, compacted):
        write_run(home, "run-0", RUN_A)
    assert compact(compacted).run_files == 1  # the closed one only
    for writer in open_writers:  # the open run goes on after the compaction
        writer.write(ref(7, "p7"), "sent", T + timedelta(minutes=1), **SMS)
        writer.close()
    assert ledger.read_state(compacted).last_status["key-7"] == "sent"
    assert compact(compacted).run_files == 1  # closed now
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))


def test_a_compaction_stopped_before_its_keys_file_is_finished_by_the_next(
    tmp_path: Path,
) -> None:
    plain, compacted = twins(tmp_path)
    for home in (plain, compacted):
        write_run(home, "run-0", RUN_A)
        write_run(home, "run-1", RUN_B)
    compact(compacted)
    # As if it stopped after writing the lines file: no keys file.
    store.generations(compacted, "keys")[1].unlink()
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))
    assert not store.generations(compacted, "keys")
    again = compact(compacted)
    assert again.run_files == 0 and again.generation == 2
    assert seen(ledger.read_state(compacted)) == seen(ledger.read_state(plain))


def test_the_cap_reads_the_sends_files_as_it_would_the_lines(tmp_path: Path) -> None:
    plain, compacted = twins(tmp_path)
    for home in (plain, compacted):
        write_run(home, "run-0", RUN_A)
        write_run(home, "run-1", RUN_B)
    compact(compacted)
    assert set(store.generations(compacted, "sends")) == {0, 1}

    def sends(home: Path, uncounted: tuple[str, ...]) -> dict[str, list[datetime]]:
        since = T - timedelta(days=1)
        state = ledger.read_state(home, keys=[], people={"p1", "p3"}, sends_since=since,
                                  uncounted_journeys=uncounted)  # fmt: skip
        return {p: sorted(times) for p, times in state.sends_by_person.items()}

    def read_alike() -> None:
        # sent, and given up on as outcome_unknown (it may have gone out); a transactional
        # journey's counted for no cap
        counted = {
            "p1": [T + timedelta(minutes=1), T + timedelta(hours=1, minutes=4)],
            "p3": [T + timedelta(hours=1, minutes=2)],
        }
        assert sends(compacted, ()) == sends(plain, ()) == counted
        assert sends(compacted, ("cart",)) == sends(plain, ("cart",)) == {}

    read_alike()
    con = duckdb.connect()
    cap_query = store.sends_sql(store.layout(con, compacted)) or ""
    con.close()
    assert "sends-00000001.parquet" in cap_query and "lines-00000001" not in cap_query
    # A home compacted before sends files: its lines are read until a compaction writes them.
    for path in store.generations(compacted, "sends").values():
        path.unlink()
    read_alike()
    assert compact(compacted).generation == 0  # nothing new to take, the sends files written
    assert set(store.generations(compacted, "sends")) == {0, 1}
    read_alike()


def test_a_run_reads_the_keys_and_people_it_needs_not_the_history(tmp_path: Path) -> None:
    home = tmp_path
    landing.ensure_layout(home)
    write_run(home, "run-0", RUN_A)
    write_run(home, "run-1", RUN_B)
    compact(home)
    write_run(home, "run-2", RUN_C)
    state = ledger.read_state(
        home, keys=["key-1"], people=["p1"], sends_since=T + timedelta(minutes=30)
    )
    # the key asked for, and every key still open (key-2: attempted, no outcome)
    assert state.last_status == {"key-1": "skipped", "key-2": "attempted"}
    assert set(state.pending) == {"key-2"}
    # p1's sends from then on: key-5's attempt given up on as outcome_unknown (key-1's is older)
    assert state.sends_by_person == {"p1": [T + timedelta(hours=1, minutes=4)]}
    everything = ledger.read_state(home)
    assert set(everything.last_status) == {f"key-{n}" for n in range(1, 7)}
    assert len(everything.sends_by_person["p1"]) == 2


@pytest.mark.parametrize("compacted", [False, True])
def test_a_tick_reads_the_decided_keys_of_its_open_entries_only(
    tmp_path: Path, compacted: bool
) -> None:
    # What a tick holds must not grow with the journey's history: keys of ended entries are
    # left in the ledger, a key of an open one is read whether compacted or newer (key-1: both),
    # and so is one recorded under a person id since merged away (carried to the new id).
    history_then_newer_lines(tmp_path, compacted)
    carried = ledger.send_key("cart", "remind", "p9", "e4")

    def decided(entries: str | None) -> dict[str, tuple[str, bool]]:
        rows = decided_rows(tmp_path, entries, {"p3": ["p9"]})
        return {key: (status, was_carried) for key, status, was_carried in rows}

    open_entries = (
        f"select entry_id, timestamp '{T}' as entered_at "
        "from (values ('e1'), ('e2'), ('e4')) t(entry_id)"
    )
    assert decided(open_entries) == {
        "key-1": ("skipped", False),
        "key-4": ("sent", False),
        carried: ("sent", True),
    }
    whole = decided(None)
    assert set(whole) == {"key-1", "key-3", "key-4", "key-5", "key-6", carried}


@pytest.mark.parametrize("compacted", [False, True])
def test_a_tick_reads_only_the_keys_written_since_its_open_entries_began(
    tmp_path: Path, compacted: bool
) -> None:
    # An entry's lines are all written after it began: a tick reads the keys last written since
    # its earliest open entry began (less a day, for clocks that disagree), and the keys file's
    # older row groups are skipped. key-1's last line is at T + 2 h, key-4's at T + 1 h 2 min.
    history_then_newer_lines(tmp_path, compacted)

    def decided(entered: dict[str, datetime | None]) -> set[str]:
        entries = pa.table(
            {
                "entry_id": pa.array(list(entered), pa.string()),
                "entered_at": pa.array(list(entered.values()), pa.timestamp("us")),
            }
        )
        rows = decided_rows(tmp_path, "select * from open_entries", open_entries=entries)
        return {key for key, *_ in rows}

    margin = CLOCK_SKEW_MARGIN
    # begun before their lines, or after by less than the margin (another host's clock): read
    assert decided({"e1": T, "e4": T}) == {"key-1", "key-4"}
    late = T + timedelta(hours=1, minutes=2) + margin - timedelta(minutes=1)
    assert decided({"e1": late, "e4": late}) == {"key-1", "key-4"}
    # the bound is the earliest open entry's: one begun early enough brings every key in
    assert decided({"e1": late + margin, "e4": T}) == {"key-1", "key-4"}
    # begun more than the margin after a key's last line: that key is not read
    past_key_4 = T + timedelta(hours=1, minutes=3) + margin
    assert decided({"e1": past_key_4, "e4": past_key_4}) == {"key-1"}
    assert decided({"e1": T + timedelta(days=3), "e4": T + timedelta(days=3)}) == set()

    # A run's read of its due keys is bounded the same way (the newer lines are read whole).
    def status(key: str, entered: datetime | None) -> str | None:
        state = ledger.read_state(tmp_path, keys=[key], keys_entered_since=entered)
        return state.last_status.get(key)

    assert status("key-4", T) == status("key-4", late) == status("key-4", None) == "sent"
    assert status("key-4", past_key_4) == (None if compacted else "sent")
    # an entry without entered_at bounds nothing, nor does one from the calendar's first day
    assert decided({"e1": T + timedelta(days=3), "e4": None}) == {"key-1", "key-4"}
    assert decided({"e1": datetime(1, 1, 1), "e4": T + timedelta(days=3)}) == {"key-1", "key-4"}

    # A run whose clock is days behind the entry's (a backfill's fixed clock) settles its
    # deferred key: the final line is stamped before the entry began, the key is still read.
    later = T + timedelta(days=3)
    writer = ledger.LedgerWriter(tmp_path, "run-7")
    writer.write(ref(7, "p7"), "deferred", later, reason="quiet_hours", reason_detail="until")
    writer.write(ref(7, "p7"), "skipped", T, reason="exited")
    writer.close()
    # a line without a readable time (another tool's): nothing bounds it
    line = {"send_key": "key-8", "journey": "cart", "step": "remind", "person_id": "p8",
            "entry_id": "e8", "status": "sent", "recorded_at": None}  # fmt: skip
    (store.run_files_dir(tmp_path) / "run-8-0.jsonl").write_text(json.dumps(line) + "\n")
    if compacted:
        compact(tmp_path)
    assert decided({"e7": later, "e8": later}) == {"key-7", "key-8"}
    assert status("key-7", later) == "skipped" and status("key-8", later) == "sent"


def test_the_keys_file_keeps_each_journeys_decided_keys_together(tmp_path: Path) -> None:
    # A tick reads its journey's decided keys written since its open entries began: grouped by
    # journey, oldest first, the other journeys' row groups and the older ones are skipped by
    # their min and max. Open keys stay first, whatever the journey.
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "run-0")
    for n in range(60):
        journey = ("cart", "welcome", "winback")[n % 3]
        key = ledger.SendRef(f"k{n:02d}", journey, "s", f"p{n}", f"e{n}")
        at = T + timedelta(seconds=60 - n)  # the later the key, the earlier its lines
        writer.write(key, "attempted", at, **SMS)  # type: ignore[arg-type]
        if n % 4:
            writer.write(key, "sent", at, **SMS)  # type: ignore[arg-type]
    writer.close()
    compact(tmp_path)
    (keys,) = store.generations(tmp_path, "keys").values()
    rows = duckdb.execute(
        "select last_status, journey, seen_at "
        f"from read_parquet('{keys}', file_row_number = true) order by file_row_number"
    ).fetchall()
    statuses = [status for status, *_ in rows]
    assert statuses == ["attempted"] * 15 + ["sent"] * 45
    closed = [(journey, at) for status, journey, at in rows if status == "sent"]
    assert closed == sorted(closed)


def test_ledger_reads_are_bounded_and_spill_to_a_folder_of_their_own(tmp_path: Path) -> None:
    # Unbounded, DuckDB takes up to 80% of the machine for a long uncompacted history; two
    # processes must never share a spill folder (DuckDB's temp file names are not unique).
    landing.ensure_layout(tmp_path)
    with store.bounded_connection(tmp_path) as one, store.bounded_connection(tmp_path) as two:
        settings = [
            con.execute(
                "select current_setting('memory_limit'), current_setting('temp_directory')"
            ).fetchall()[0]
            for con in (one, two)
        ]
        (limit_one, spill_one), (limit_two, spill_two) = settings
        assert limit_one == limit_two == "3.7 GiB"  # 4 GB
        assert spill_one != spill_two
        assert Path(spill_one).parent == store.compacted_dir(tmp_path) / ".spill"
        assert Path(spill_one).is_dir()
    assert not Path(spill_one).exists() and not Path(spill_two).exists()


def test_a_spill_folder_whose_connection_is_gone_is_removed_and_one_in_use_kept(
    tmp_path: Path,
) -> None:
    # Spill files can hold messages: a process killed mid-read leaves its folder, which the
    # next connection removes; a folder still in use (its lock held, by whichever process or
    # machine) stays, and so does one being made (no lock file yet).
    landing.ensure_layout(tmp_path)
    spills = store.compacted_dir(tmp_path) / ".spill"
    killed = subprocess.Popen(
        [sys.executable, "-c", "from activations.ledger import store; from pathlib import Path; "
         f"import time; c = store.bounded_connection(Path({str(tmp_path)!r})); c.__enter__(); "
         "print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert killed.stdout is not None and killed.stdout.readline() == "open\n"
    (left,) = spills.glob("ledger-spill-*")
    (left / "duckdb_temp_block-1.block").write_text("a message")
    with store.bounded_connection(tmp_path):
        assert left.exists()  # its process is alive: in use
    killed.kill()
    killed.wait()
    making = spills / "ledger-spill-making"
    making.mkdir()
    with store.bounded_connection(tmp_path):
        assert not left.exists()
        assert making.exists()


def test_a_read_beyond_the_memory_limit_stops_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r1")
    for i in range(20_000):
        writer.write(ref(i, f"p{i % 100}"), "attempted", T + timedelta(seconds=i), sync=False,
                     **SMS)  # fmt: skip
    writer.close()
    assert len(ledger.read_state(tmp_path).last_status) == 20_000
    monkeypatch.setenv(store.MEMORY_LIMIT_VARIABLE, "1MB")
    with pytest.raises(RuntimeError, match="took more than 1MB: compact it"):
        ledger.read_state(tmp_path)
    with pytest.raises(RuntimeError, match="compacting .* took more than 1MB: raise SWITCHYARD"):
        compact(tmp_path)


def test_caps_simulate_and_dbt_staging_read_each_line_once(paths: Paths) -> None:
    home = paths.landing
    write_run(home, "run-0", RUN_A)
    write_run(home, "run-1", RUN_B)
    before = paths.home / "before"
    shutil.copytree(home, before)
    compact(home)
    age(home)
    compact(home)  # the first run files are deleted now
    write_run(home, "run-2", RUN_C)
    compact(home)  # lines file and keys file of generation 3, run-2's file kept a while
    assert run_files(home) and run_files(before)
    # caps simulate: p1's two sends an hour apart, one held back by 1 per 24 h, either way
    policy = CapPolicy(messages=1, per_hours=24)
    until = T + timedelta(days=1)
    write_run(before, "run-2", RUN_C)
    replayed = simulate(home, policy, until)
    assert replayed == simulate(before, policy, until)
    assert sum(s.sent for s in replayed) == 4 and sum(s.held_back for s in replayed) == 1
    dbt_build(paths, "stg_ledger__deliveries")
    rows = query(
        paths,
        "select send_key, delivery_status, recorded_at, source_file from stg_ledger__deliveries",
    )
    key = lambda r: (r["send_key"], r["delivery_status"], r["recorded_at"])  # noqa: E731
    expected = [(f"key-{n}", status) for n, _, status, _ in RUN_A + RUN_B + RUN_C]
    assert sorted((r["send_key"], r["delivery_status"]) for r in rows) == sorted(expected)
    assert len({key(r) for r in rows}) == len(rows)
    assert all(r["source_file"].startswith("run-run-") for r in rows)


def test_a_second_compaction_waits_for_the_first_and_takes_nothing_twice(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    write_run(tmp_path, "run1", RUN_A)
    folder = store.compacted_dir(tmp_path)
    second: list[Compaction] = []
    with (folder / ".lock").open("ab") as held:  # the first compaction (another process) runs
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=lambda: second.append(compact(tmp_path)))
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive() and not second  # waiting, not taking run1 as well
        first = compact_unlocked(tmp_path, folder)
    thread.join(timeout=60)
    assert first.run_files == 1 and first.lines == len(RUN_A)
    assert second and second[0].run_files == 0  # it found run1 already taken
    state = ledger.read_state(tmp_path)
    assert state.attempts == {"key-1": 1, "key-2": 1, "key-3": 0, "key-4": 0}


STATUSES: tuple[ledger.LedgerStatus, ...] = (
    "attempted", "unknown", "sent", "failed", "skipped", "deferred"
)  # fmt: skip


def random_line(rnd: random.Random, status: str) -> dict[str, Any]:
    if status == "attempted":
        channel = rnd.choice(["sms", "email"])
        subject = "Your cart" if channel == "email" else None
        return {"channel": channel, "recipient": "+1", "body": f"b{rnd.randrange(3)}",
                "subject": subject}  # fmt: skip
    if status == "sent":
        return {
            "channel": "sms",
            "recipient": "+1",
            "provider_message_id": f"SM{rnd.randrange(99)}",
        }
    if status == "failed":
        return {"reason": rnd.choice(["outcome_unknown", "SMTP 550"])}
    if status == "deferred":  # retrying: it settles the attempt before it (as the sender's)
        reason = rnd.choice(["capped", "quiet_hours", "retrying"])
        columns = {"channel": "sms", "recipient": "+1"} if reason == "retrying" else {}
        return {"reason": reason, "reason_detail": f"until {rnd.randrange(3)}", **columns}
    return {"reason": "capped"} if status == "skipped" else {}


@pytest.mark.parametrize("seed", range(12))
def test_random_histories_read_alike_compacted_or_not_whole_or_by_key(
    tmp_path: Path, seed: int
) -> None:
    # Any order of statuses (keys reopened after a final line, ties on the clock), some
    # compactions between runs: the compacted folder reads as the plain one, and a run's narrow
    # read (some keys, some people, a window) as the whole read restricted to them.
    rnd = random.Random(seed)
    plain, compacted = twins(tmp_path)
    keys = [f"k{i}" for i in range(8)]
    person = {k: f"p{rnd.randrange(4)}" for k in keys}
    at = T
    for run in range(rnd.randint(2, 5)):
        lines = []
        for _ in range(rnd.randint(1, 8)):
            key, status = rnd.choice(keys), rnd.choice(STATUSES)
            at += timedelta(minutes=rnd.choice([0, 0, 1, 5]))
            lines.append((key, status, at, random_line(rnd, status)))
        for home in (plain, compacted):
            writer = ledger.LedgerWriter(home, f"r{run}")
            for key, status, when, columns in lines:
                writer.write(ledger.SendRef(key, "j", "s", person[key], "e"), status, when,
                             **columns)  # fmt: skip
            writer.close()
        if rnd.random() < 0.6:
            compact(compacted)
    whole = ledger.read_state(plain)
    assert seen(ledger.read_state(compacted)) == seen(whole)
    unsettled = {k for k, status in whole.last_status.items() if status in store.OPEN}
    assert ledger.open_keys(plain) == ledger.open_keys(compacted) == unsettled
    wanted = rnd.sample(keys, 3)
    people = set(rnd.sample(sorted(set(person.values())), 2))
    since = T + timedelta(minutes=rnd.randrange(0, 30))
    for home in (plain, compacted):
        part = ledger.read_state(home, keys=wanted, people=people, sends_since=since)
        for key in wanted:
            assert part.last_status.get(key) == whole.last_status.get(key)
            assert part.attempts.get(key) == whole.attempts.get(key)
            assert part.decided_at.get(key) == whole.decided_at.get(key)
        assert (part.pending, part.deferred) == (whole.pending, whole.deferred)
        for key in wanted:
            assert part.refusals.get(key) == whole.refusals.get(key)
        for p in people:
            expected = sorted(t for t in whole.sends_by_person.get(p, []) if t >= since)
            assert sorted(part.sends_by_person.get(p, [])) == expected


@pytest.mark.parametrize("compacted", [False, True])
def test_a_run_reads_only_the_open_keys_it_acts_on_or_counts(
    tmp_path: Path, compacted: bool
) -> None:
    landing.ensure_layout(tmp_path)
    later = "until later"

    def lines(run_id: str, rows: list[tuple[str, str, str, str, dict[str, Any]]]) -> None:
        writer = ledger.LedgerWriter(tmp_path, run_id)
        for key, journey, person, status, columns in rows:
            writer.write(ledger.SendRef(key, journey, "s", person, "e"), status, T, **columns)  # type: ignore[arg-type]
        writer.close()

    lines("r1", [
        ("due", "cart", "p1", "deferred", {"reason": "capped", "reason_detail": later}),
        ("left", "cart", "p9", "deferred", {"reason": "capped", "reason_detail": later}),
        ("theirs", "winback", "p1", "deferred", {"reason": "capped", "reason_detail": later}),
        ("doubt", "winback", "p1", "attempted", SMS),  # may have reached p1: counts for the cap
        ("stranger", "winback", "p7", "attempted", SMS),
    ])  # fmt: skip
    if compacted:
        compact(tmp_path)
        # a newer line reopening nothing of this run's, and one of a stranger's
        lines("r2", [("stranger2", "winback", "p8", "attempted", SMS)])
    state = ledger.read_state(
        tmp_path, keys=["due"], people={"p1"}, sends_since=T - timedelta(days=1), journey="cart"
    )
    assert set(state.deferred) == {"due", "left"}  # the journey's own (left: settled as exited)
    assert set(state.pending) == {"doubt"}
    assert not {"theirs", "stranger", "stranger2"} & set(state.refs)
    everything = ledger.read_state(tmp_path, keys=["due"], people={"p1"})
    assert {"theirs", "stranger"} <= set(everything.refs)


def test_a_run_reads_only_the_latest_sends_its_cap_can_count(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r1")
    for n, hours in enumerate((-5, -3, -1, 1)):  # the last one after the read's clock
        writer.write(ref(n, "p1"), "sent", T + timedelta(hours=hours), **SMS)
    writer.close()
    since = T - timedelta(days=1)
    latest = ledger.read_state(tmp_path, people={"p1"}, sends_since=since, sends_until=T,
                               latest_sends=2)  # fmt: skip
    # the latest two up to T, and every one after it (another run's: counted once the clock
    # passes it)
    assert sorted(latest.sends_by_person["p1"]) == [
        T - timedelta(hours=3), T - timedelta(hours=1), T + timedelta(hours=1)
    ]  # fmt: skip
    whole = ledger.read_state(tmp_path, people={"p1"}, sends_since=since)
    # what a cap of up to two messages counts is the same as from every send
    for now in (T, T + timedelta(hours=2)):
        for messages, hours in ((2, 4), (2, 2), (1, 2), (2, 24)):
            counted = min(latest.sends_within("p1", now, hours), messages)
            assert counted == min(whole.sends_within("p1", now, hours), messages)


def test_a_run_killed_mid_line_leaves_a_cut_line_that_readers_and_compaction_skip(
    tmp_path: Path,
) -> None:
    # A run SIGKILLed midway through a write leaves half a line at the end of its file (the
    # kernel stops a write between pages; seen in the SIGKILL test on push). The next run must
    # still read the ledger: the cut line's request never left (lines are fsynced before their
    # batch's requests go out).
    whole, cut = twins(tmp_path)
    write_run(whole, "run1", RUN_A)
    write_run(cut, "run1", RUN_A)
    (path,) = store.run_files_dir(cut).glob("run-*.jsonl")
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"send_key":"key-9","run_id":"run1","journey":"cart","step":"remind","per')
    assert seen(ledger.read_state(cut)) == seen(ledger.read_state(whole))
    compact(cut)
    compact(whole)
    assert seen(ledger.read_state(cut)) == seen(ledger.read_state(whole))
    # a file still held by its writer, midway through a line, is read the same way
    writer = ledger.LedgerWriter(cut, "run2")
    try:
        (held,) = set(store.run_files_dir(cut).glob("run-run2-*.jsonl"))
        held.write_text('{"send_key":"key-8","run')  # as a write seen midway
        assert seen(ledger.read_state(cut)) == seen(ledger.read_state(whole))
    finally:
        writer.close()


def test_a_cut_line_stays_a_reject_once_compaction_deletes_its_run_file(paths: Paths) -> None:
    # Staging lists a cut line as a reject; the compaction takes whole lines only, and deletes
    # the run file a while later: the reject must stay listed, once, before and after.
    home = paths.landing
    path = write_run_ending(home, "run-0", RUN_A, '{"send_key":"key-9","run_id":"run-0","st')
    write_run(home, "run-1", RUN_B)  # whole: no reject of its own
    writer = ledger.LedgerWriter(home, "run-2")  # killed midway through its first line
    (only_cut,) = store.run_files_dir(home).glob("run-run-2-*.jsonl")
    only_cut.write_text('{"send_key":"key-7","run')
    writer.close()

    def rejects(*also: str) -> list[tuple[str, str]]:
        dbt_build(paths, "stg_ledger__rejects", *also)
        rows = query(paths, "select source_file, reject_reason from stg_ledger__rejects")
        return [(Path(r["source_file"]).name, r["reject_reason"][:16]) for r in rows]

    listed = sorted([(path.name, "unreadable line:"), (only_cut.name, "unreadable line:")])
    assert sorted(rejects()) == listed  # from the run files
    assert compact(home).run_files == 3 and len(run_files(home)) == 3  # taken, still there
    assert sorted(rejects()) == listed  # still from the run files
    assert store.recorded_rejects(duckdb.connect(), home) == set()
    age(home)
    # a run file of no whole line goes too: the lines file names every run file it took
    assert compact(home).deleted == 3 and not run_files(home)
    assert store.recorded_rejects(duckdb.connect(), home) == {path.name, only_cut.name}
    assert sorted(rejects("stg_ledger__deliveries")) == listed  # from the compaction's record
    lines = query(paths, "select count(*) as n from stg_ledger__deliveries")
    assert lines == [{"n": len(RUN_A) + len(RUN_B)}]


def test_a_line_without_a_send_key_is_a_reject_wherever_it_is(paths: Paths) -> None:
    # A whole line without a send key (not one our writer makes), in a file that ends whole and
    # in one cut short: a reject, once, before compaction, while the taken file is still there
    # and after it is deleted; never a delivery (whose send_key is tested not null).
    home = paths.landing
    keyless = '{"run_id":"run-1","status":"sent","recorded_at":"2026-11-02T12:00:00"}\n'
    # and a line with none of a line's columns
    whole = write_run_ending(home, "run-0", RUN_A, keyless + '{"journey":"cart"}\n')
    cut = write_run_ending(home, "run-1", RUN_B, keyless + '{"send_key":"key-9","run_id":"r')

    def rejects() -> list[tuple[str, str]]:
        dbt_build(paths, "stg_ledger__rejects", "stg_ledger__deliveries")
        rows = query(paths, "select source_file, reject_reason from stg_ledger__rejects")
        return sorted((Path(r["source_file"]).name, r["reject_reason"][:16]) for r in rows)

    listed = sorted(
        [(whole.name, "missing send_key"), (whole.name, "unreadable line:"),
         (cut.name, "missing send_key"), (cut.name, "unreadable line:")]
    )  # fmt: skip
    assert rejects() == listed
    assert compact(home).run_files == 2 and len(run_files(home)) == 2
    assert rejects() == listed
    age(home)
    assert compact(home).deleted == 2 and not run_files(home)
    assert rejects() == listed
    lines = query(paths, "select count(*) as n from stg_ledger__deliveries")
    assert lines == [{"n": len(RUN_A) + len(RUN_B)}]


def test_a_keyless_line_an_older_compaction_left_out_stays_a_reject(paths: Paths) -> None:
    # Compactions before this kept no keyless line of a cut run file in its lines file: the
    # line is listed from the run file, then from the record the deleting compaction makes.
    home = paths.landing
    keyless = '{"run_id":"run-0","status":"sent","recorded_at":"2026-11-02T12:00:00"}\n'
    write_run_ending(home, "run-0", RUN_A, keyless + '{"se')
    compact(home)
    lines_file = store.generations(home, "lines")[1]
    con = duckdb.connect()  # as an older compaction wrote it: without the keyless line
    kv = con.execute(f"select key, value from parquet_kv_metadata('{lines_file}')").fetchall()
    (names,) = [value.decode() for key, value in kv if key.decode() == store.SOURCE_FILES]
    con.execute(
        f"copy (select * from '{lines_file}' where send_key is not null) to '{lines_file}.old' "
        f"(format parquet, kv_metadata {{{store.SOURCE_FILES}: '{names}'}})"
    )
    con.close()
    os.replace(f"{lines_file}.old", lines_file)

    def rejects() -> list[str]:
        dbt_build(paths, "stg_ledger__rejects")
        rows = query(paths, "select reject_reason from stg_ledger__rejects")
        return sorted(r["reject_reason"][:16] for r in rows)

    both = ["missing send_key", "unreadable line:"]
    assert rejects() == both
    age(home)
    assert compact(home).deleted == 1 and not run_files(home)
    assert rejects() == both


def test_a_line_without_a_send_key_leaves_every_other_key_in_the_state(tmp_path: Path) -> None:
    # A whole line with no key (not one our writer makes) is a key of its own, null: it must
    # not make `send_key not in (the keys the newer lines touch)` null for every stored key.
    landing.ensure_layout(tmp_path)
    write_run(tmp_path, "run-0", RUN_A)
    compact(tmp_path)
    keys = set(ledger.read_state(tmp_path).last_status)
    writer = ledger.LedgerWriter(tmp_path, "run-1")
    (path,) = store.run_files_dir(tmp_path).glob("run-run-1-*.jsonl")
    path.write_text('{"run_id":"run-1","status":"sent","recorded_at":"2026-11-02T12:00:00"}\n')
    writer.close()
    assert set(ledger.read_state(tmp_path).last_status) >= keys
    # a run's read of a few keys too (the open ones come with them): nor in a cut run file
    few = ledger.read_state(tmp_path, keys=["key-1"])
    assert few.last_status == {"key-1": "sent", "key-2": "unknown", "key-4": "deferred"}
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"send_key":"key-9","run_id":"run-1","st')
    assert ledger.read_state(tmp_path, keys=["key-1"]).last_status == few.last_status
    compact(tmp_path)
    assert set(ledger.read_state(tmp_path).last_status) >= keys
    assert ledger.read_state(tmp_path, keys=["key-1"]).last_status == few.last_status
    # a keys file from before keyless lines made no key row: its null key is not read
    keys_file = store.generations(tmp_path, "keys")[2]
    con = duckdb.connect()
    con.execute(
        f"copy (select * from '{keys_file}' union all by name "
        f"select null as send_key, 'skipped' as last_status) to '{keys_file}.old' (format parquet)"
    )
    con.close()
    os.replace(f"{keys_file}.old", keys_file)
    assert None not in ledger.read_state(tmp_path).last_status
