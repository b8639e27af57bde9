"""Landing files, the ledger's schema, and the sample data."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import yaml

from activations import ledger
from switchyard import landing, sample_data
from switchyard.settings import PROJECT_DIR


def test_ledger_columns_match_the_dbt_source() -> None:
    sources = yaml.safe_load(
        (PROJECT_DIR / "models/staging/ledger/_ledger__sources.yml").read_text()
    )
    location = sources["sources"][0]["tables"][0]["meta"]["external_location"]
    declared = dict(re.findall(r"(\w+) := '(\w+)'", location))
    assert declared == ledger.COLUMNS


def test_staging_reads_every_ledger_column_from_run_files_and_compacted_files() -> None:
    staging = (PROJECT_DIR / "models/staging/ledger/stg_ledger__deliveries.sql").read_text()
    listed = re.search(r"set columns = \[(.*?)\]", staging, re.S)
    assert listed is not None
    assert re.findall(r"'(\w+)'", listed.group(1)) == list(ledger.COLUMNS)


def test_skip_reasons_are_one_set_in_python_and_dbt() -> None:
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["vars"]["delivery"]["skip_reasons"] == [r.value for r in ledger.SkipReason]
    assert project["vars"]["delivery"]["defer_reasons"] == [r.value for r in ledger.DeferReason]


def test_write_batch_is_atomic_and_never_rewrites(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    first = landing.write_batch(tmp_path, "shop", "orders", [{"order_id": "1"}])
    second = landing.write_batch(tmp_path, "shop", "orders", [{"order_id": "2"}])
    assert first != second
    assert [json.loads(first.read_text())] == [{"order_id": "1"}]
    assert not list(first.parent.glob(".*.tmp"))


def test_sample_data_is_deterministic_and_messy(tmp_path: Path) -> None:
    anchor = datetime(2026, 11, 1, 12, 0)
    a = sample_data.generate(tmp_path / "a", people=300, seed=3, anchor=anchor)
    b = sample_data.generate(tmp_path / "b", people=300, seed=3, anchor=anchor)
    assert a == b

    def rows(root: Path) -> list[dict[str, object]]:
        files = sorted((root / "segment" / "events").glob("sample-*.jsonl"))
        return [json.loads(line) for f in files for line in f.read_text().splitlines()]

    ra, rb = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert ra == rb
    ids = [r["messageId"] for r in ra]
    assert len(ids) > len(set(ids))  # duplicate deliveries
    assert any(r["userId"] is None and r["anonymousId"] is None for r in ra)
    assert any(r["timestamp"] == "yesterday" for r in ra)
    devices_per_user: dict[object, set[object]] = {}
    for r in ra:
        if r["type"] == "identify":
            devices_per_user.setdefault(r["userId"], set()).add(r["anonymousId"])
    assert any(len(d) == 2 for d in devices_per_user.values())
    assert any(r["type"] == "identify" and not r["traits"].get("email") for r in ra)
    c = sample_data.generate(tmp_path / "c", people=300, seed=4, anchor=anchor)
    assert rows(tmp_path / "c") != ra and c.people == 300
