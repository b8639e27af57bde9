"""The phone parser both engines call (switchyard/phones.py): DuckDB's functions through the
dbt-duckdb plugin, Spark's script transformation through the line protocol tested here."""

from __future__ import annotations

import io
import subprocess
import sys

import duckdb

from switchyard import phones


def encode(value: str) -> str:
    return value.encode("utf-8").hex().upper()  # as Spark's hex() writes it


def test_the_script_transformation_answers_every_value_it_is_given() -> None:
    values = ["+1 (415) 555-0100", "", "not\ta\nphone", "0207 946 0958", "x" * 200]
    stdin = "".join(f"{encode(v)}\n" for v in values) + "\\N\n"
    out = subprocess.run(
        [sys.executable, "-m", "switchyard.phones", "GB"],
        input=stdin, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    # one row per non-null value, the value echoed as given (a null is not a phone to parse)
    assert [bytes.fromhex(r[0].removeprefix("=")).decode() for r in rows] == values
    assert all(r[0].startswith("=") for r in rows)  # never an empty field: Spark reads null
    assert rows[0][1:] == ["+14155550100", "\\N"]
    assert rows[3][1:] == ["+442079460958", "\\N"]
    for row in (rows[1], rows[2], rows[4]):
        assert row[1] == "\\N" and row[2] != "\\N" and "\t" not in row[2]


def test_duckdbs_functions_give_what_the_transformation_gives() -> None:
    con = duckdb.connect()
    phones.Plugin.__new__(phones.Plugin).configure_connection(con)
    values = ["+1 415 555 0100", "", "12", None]
    got = con.execute(
        "select switchyard_phone_e164(v, 'US'), switchyard_phone_invalid_reason(v, 'US')"
        " from unnest(?) as t(v)",
        [values],
    ).fetchall()
    out = io.StringIO()
    phones.transform("US", io.StringIO("".join(f"{encode(v)}\n" for v in values[:3])), out)
    lines = [line.split("\t") for line in out.getvalue().splitlines()]
    expected = [(n if n != "\\N" else None, w if w != "\\N" else None) for _, n, w in lines]
    assert got == [*expected, (None, None)]
