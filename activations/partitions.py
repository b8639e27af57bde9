"""People split into partitions by a hash of their person id, so that several workers run a
journey's sends in parallel, never on the same person.

A person is in exactly one partition: the one whose range holds the first 8 hex digits of the
md5 of their person id. Ranges of the hash, not a modulo, so the test is a comparison of strings
that sqlglot writes in any dialect (DuckDB, Spark, Snowflake, BigQuery all return md5 as 32
lowercase hex digits), and Python answers it the same way. Everything a frequency cap counts is
one person's, so a cap holds across partitions as long as each person's runs never overlap:
a partition's runs share its locks (activations/run.py), and a run over everyone takes every
partition's.

The count is the setting SWITCHYARD_PERSON_PARTITIONS (default 1: no partitions). Change it only
while no journey runs: a run under the old count and one under the new would not share locks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

COUNT_VARIABLE = "SWITCHYARD_PERSON_PARTITIONS"
MAX_PARTITIONS = 4096
_SPACE = 16**8  # the hash prefix's values
_KEY = re.compile(r"^persons-(\d+)-of-(\d+)$")


@dataclass(frozen=True, order=True)
class PersonPartition:
    index: int  # 0-based
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_PARTITIONS or not 0 <= self.index < self.count:
            raise ValueError(
                f"person partition {self.index} of {self.count}: the count must be 1 to "
                f"{MAX_PARTITIONS} and the index 0 to count - 1"
            )

    @property
    def key(self) -> str:
        """The Dagster partition key, and the suffix of the partition's locks (1-based)."""
        return f"persons-{self.index + 1}-of-{self.count}"

    @classmethod
    def from_key(cls, key: str) -> PersonPartition:
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"{key!r} is not a person partition key (persons-K-of-N)")
        return cls(int(match[1]) - 1, int(match[2]))

    def share_of(self, total: int) -> int:
        """This partition's part of a limit all partitions keep to together (requests in flight
        to a provider): the parts add up to `total`, at least one each (so more partitions than
        `total` go over it, by one request each)."""
        base, extra = divmod(total, self.count)
        return max(1, base + (1 if self.index < extra else 0))

    @property
    def bounds(self) -> tuple[str, str | None]:
        """The partition's range of the hash prefix: [low, high), high None for the last."""
        low = f"{self.index * _SPACE // self.count:08x}"
        if self.index == self.count - 1:
            return low, None
        return low, f"{(self.index + 1) * _SPACE // self.count:08x}"

    @classmethod
    def of(cls, person_id: str, count: int) -> PersonPartition:
        """The partition of `count` that holds `person_id`."""
        return next(p for p in all_partitions(count) if p.holds(person_id))

    def holds(self, person_id: str) -> bool:
        prefix = hashlib.md5(person_id.encode("utf-8")).hexdigest()[:8]
        low, high = self.bounds
        return prefix >= low and (high is None or prefix < high)

    def condition(self, person_id: exp.Expression) -> exp.Condition:
        """`person_id` is in this partition, as a sqlglot tree (write it in any dialect)."""
        prefix = exp.Left(this=exp.MD5(this=person_id), expression=exp.Literal.number(8))
        low, high = self.bounds
        above = exp.GTE(this=prefix, expression=exp.Literal.string(low))
        if high is None:
            return above
        return exp.and_(above, exp.LT(this=prefix.copy(), expression=exp.Literal.string(high)))

    def sql(self, person_id: str, dialect: str = "duckdb") -> str:
        """condition() in `dialect`, for a person id column or expression written in it."""
        return self.condition(exp.maybe_parse(person_id, dialect=dialect)).sql(dialect=dialect)


def configured_count(environ: Mapping[str, str] = os.environ) -> int:
    raw = environ.get(COUNT_VARIABLE, "1")
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(
            f"{COUNT_VARIABLE}={raw!r}: give a whole number of person partitions from 1 (none) "
            f"to {MAX_PARTITIONS}"
        )
    return count


def all_partitions(count: int) -> list[PersonPartition]:
    return [PersonPartition(i, count) for i in range(count)]


def lock_suffixes(partition: PersonPartition | None, count: int) -> list[str]:
    """The suffixes of the locks a run holds: its partition's; every partition's for a run over
    everyone while partitions are configured; none (the plain locks) when they are not."""
    if partition is not None and partition.count != count:
        raise ValueError(
            f"partition {partition.key} does not match {COUNT_VARIABLE}={count}: runs under "
            "two counts would not share their locks"
        )
    if count == 1:
        return [""]
    if partition is not None:
        return [f".{partition.key}"]
    return [f".{p.key}" for p in all_partitions(count)]
