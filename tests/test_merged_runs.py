"""Runs across a merge of two person ids, end to end: real run_journey calls on a real DuckDB
warehouse file (the tables dbt would build, written directly), a real sandbox and real ledger
files. A text in doubt under the old id is settled once, under the new one, and the old key then
says where it went on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

import activations.run as run_module
from activations import ledger, warehouse
from activations.channels import ChannelSettings
from activations.run import RunSummary, run_journey
from sandbox import Fault, Sandbox
from switchyard import landing
from tests.test_overlapping_runs import T, build_warehouse, journey

CART = journey("cart")


def run(home: Path, sandbox: Sandbox, minutes: int) -> RunSummary:
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    return run_journey(
        CART,
        duckdb_path=home / "warehouse.duckdb",
        landing_dir=home / "landing",
        clients=clients,
        now=T + timedelta(minutes=minutes),
    )


def doubt_then_merge(home: Path, sandbox: Sandbox) -> str:
    """A text to p-old left in doubt (its answer lost, the lookup failing); then identity
    resolution merges p-old into p0 and the entry goes on as p0's. The old key."""
    landing.ensure_layout(home / "landing")
    warehouse = home / "warehouse.duckdb"
    build_warehouse(warehouse, [CART])
    con = duckdb.connect(str(warehouse))
    con.execute("delete from audience_cart where person_id <> 'p0'")
    for table in ("audience_cart", "dim_people"):  # p0 went by another id then
        con.execute(f"update {table} set person_id = 'p-old' where person_id = 'p0'")
    con.close()
    sandbox.fail_next(Fault("twilio", lose_response=True))
    sandbox.fail_next(Fault("twilio", status=503))
    first = run(home, sandbox, 0)
    state = ledger.read_state(home / "landing")
    ((old_key, status),) = state.last_status.items()
    assert (first.sent, status, state.refs[old_key].person_id) == ({}, "unknown", "p-old")
    con = duckdb.connect(str(warehouse))
    con.execute("update audience_cart set person_id = 'p0'")
    con.execute("update dim_people set person_id = 'p0' where person_id = 'p-old'")
    con.execute("insert into dim_person_aliases values ('p-old', 'p0', ?, true)", [T])
    con.close()
    return old_key


def test_a_text_in_doubt_before_a_merge_is_settled_once_and_its_old_key_superseded(
    tmp_path: Path,
) -> None:
    with Sandbox() as sandbox:
        old_key = doubt_then_merge(tmp_path, sandbox)
        new_key = ledger.send_key("cart", "remind", "p0", ledger.read_state(
            tmp_path / "landing").refs[old_key].entry_id)  # fmt: skip
        # The step, due under p0's key, carries the attempt: Twilio's list has the text.
        second = run(tmp_path, sandbox, 1)
        assert (second.sent, second.reconciled) == ({"sms": 1}, 1)
        # Once the new key is decided (the run's next round: not due, so not read with its
        # keys), the old key is superseded: neither looked up again nor settled as left.
        assert (second.skipped, second.superseded) == ({}, 1)
        third = run(tmp_path, sandbox, 2)
        assert (third.skipped, third.superseded, third.reconciled) == ({}, 0, 0)
        assert len(sandbox.received) == 1
    assert ledger.read_state(tmp_path / "landing").last_status == {
        old_key: "skipped",
        new_key: "sent",
    }


def test_an_old_key_is_superseded_after_a_run_stopped_once_its_entry_had_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run that sent under p0's key is stopped after its next round's tick (which moved the
    # entry past its last step) and before that round's delivery: the next run still finds the
    # new key decided, though the entry has ended, and supersedes the old one.
    real = run_module.deliver
    rounds: list[int] = []

    def stopped_in_round_two(*args: Any, **kwargs: Any) -> None:
        rounds.append(1)
        if len(rounds) == 2:
            raise KeyboardInterrupt("stopped after round two's tick")
        real(*args, **kwargs)

    with Sandbox() as sandbox:
        old_key = doubt_then_merge(tmp_path, sandbox)
        monkeypatch.setattr(run_module, "deliver", stopped_in_round_two)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, sandbox, 1)
        monkeypatch.setattr(run_module, "deliver", real)
        third = run(tmp_path, sandbox, 2)
        assert (third.skipped, third.superseded) == ({}, 1)
        assert len(sandbox.received) == 1  # neither looked up nor sent again
    assert ledger.read_state(tmp_path / "landing").last_status[old_key] == "skipped"


def test_the_person_an_id_goes_on_as_comes_first_whatever_its_id() -> None:
    # The ledger carries an old key to the first person (follow_aliases), the tick moves the
    # entry to is_primary: the two must agree.
    con = duckdb.connect()
    con.execute(
        "create table dim_person_aliases as select * from (values "
        "('a', 'b', ?::timestamp, false), ('a', 'z', ?::timestamp, true)) "
        "t(alias_person_id, person_id, aliased_at, is_primary)",
        [T, T],
    )
    aliases, since = warehouse.read_person_aliases(con)
    assert aliases == {"a": ["z", "b"]} and since[("a", "b")] == T
