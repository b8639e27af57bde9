"""Raw phone values parsed with Google's libphonenumber (the `phonenumbers` package), for the
dbt model int_phone_numbers on every engine:

- DuckDB: scalar functions `switchyard_phone_e164(raw, region)` and
  `switchyard_phone_invalid_reason(raw, region)`, registered on dbt-duckdb's connection by the
  profile's plugin (`DuckDBFunctions` below);
- Spark: a script transformation (`TRANSFORM ... USING 'python -m switchyard.phones US'`) that
  runs this module on the executors, one value per line.

One parser, so both engines normalize a phone the same way.
"""

from __future__ import annotations

import functools
import sys
from typing import TextIO

import phonenumbers


@functools.lru_cache(maxsize=65536)
def parse(raw: str, region: str) -> tuple[str | None, str | None]:
    """(E.164, None) for a valid number, else (None, why). Numbers without a country code are
    read in `region`."""
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException as exc:
        return None, f"not a phone number: {exc}"
    if not phonenumbers.is_valid_number(number):
        return None, "not a valid number for its region"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def e164(raw: str | None, region: str) -> str | None:
    return None if raw is None else parse(raw, region)[0]


def national_digits(e164_number: str) -> str | None:
    """The national significant number of an E.164 number: the digits every spelling of it
    holds in order (with a country code, a trunk 0, spaces or dashes around them)."""
    try:
        parsed = phonenumbers.parse(e164_number, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.national_significant_number(parsed) or None


def invalid_reason(raw: str | None, region: str) -> str | None:
    return None if raw is None else parse(raw, region)[1]


# Spark's script transformation speaks tab-separated lines with \N for null: the raw value comes
# and goes hex-encoded (it is user input and may hold tabs or line breaks; Spark's base64 breaks
# long values into MIME lines), the reason with its whitespace folded. An empty line is an empty
# value, parsed like any other (DuckDB's functions see it too); it goes back behind a marker,
# since Spark reads an empty field as null.
NULL = "\\N"
MARK = "="


def transform(region: str, lines: TextIO, out: TextIO) -> None:
    for line in lines:
        encoded = line.rstrip("\r\n")
        if encoded == NULL:
            continue
        number, reason = parse(bytes.fromhex(encoded).decode("utf-8"), region)
        why = " ".join(reason.split()) if reason else NULL
        out.write(f"{MARK}{encoded}\t{number or NULL}\t{why}\n")


try:  # dbt-duckdb is absent where only Spark runs
    from dbt.adapters.duckdb.plugins import BasePlugin
except ImportError:  # pragma: no cover
    BasePlugin = object  # type: ignore[assignment,misc]


class Plugin(BasePlugin):  # type: ignore[misc,valid-type]
    """dbt-duckdb plugin (profiles.yml: `plugins: [{module: switchyard.phones}]`)."""

    def configure_connection(self, conn: object) -> None:
        for name, function in [
            ("switchyard_phone_e164", e164),
            ("switchyard_phone_invalid_reason", invalid_reason),
        ]:
            conn.create_function(  # type: ignore[attr-defined]
                name,
                function,
                ["VARCHAR", "VARCHAR"],
                "VARCHAR",
                null_handling="special",  # they return null for a valid or an invalid number
                side_effects=False,
            )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m switchyard.phones REGION  (hex-encoded values on stdin)")
    transform(sys.argv[1], sys.stdin, sys.stdout)
