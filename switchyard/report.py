"""The journey report: one self-contained HTML file from the metrics marts (models/metrics), for
people who want to see at a glance whether a journey works. `switchyard report` writes it, and
the Dagster asset journey_report after each days-tier run.

On DuckDB it reads the published read-only copy of the warehouse when there is one (never
locked by a run), else the working file, read-only; on another engine (SWITCHYARD_TARGET=spark),
that engine's warehouse. Each query is written once in DuckDB's SQL, parsed by sqlglot and read
through activations/arrow_warehouse.py in the warehouse's own dialect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from activations.arrow_warehouse import ArrowWarehouse, DuckDBWarehouse, read_table, relation
from switchyard import charts
from switchyard.publish import published_path

ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "time_decay")
FREQUENCY_BUCKETS = ("1", "2", "3", "4", "5+")


class ReportError(Exception):
    """Nothing to report on, or a journey that has no data: says what to run first."""


class UnknownJourney(ReportError):
    """The journey asked for has no entries in that copy of the warehouse."""


@dataclass(frozen=True)
class Written:
    path: Path
    journeys: tuple[str, ...]
    source: str  # the DuckDB file read, or the engine


def default_output(home: Path) -> Path:
    return home / "reports" / "journeys.html"


def sources(warehouse: Path) -> list[Path]:
    """Where to read, in order: the published copy (never locked), then the working file (which
    a run may hold, and which has the marts first after a dbt build outside a pipeline run)."""
    found = [p for p in (published_path(warehouse), warehouse) if p.exists()]
    if not found:
        raise ReportError(
            f"no warehouse at {warehouse}: run the pipeline first (`make demo`, or a Dagster run)"
        )
    return found


def write_report(
    warehouse: Path | ArrowWarehouse, output: Path, journey: str | None = None
) -> Written:
    """Write the report for every journey with entries (or only `journey`), from the DuckDB file
    `warehouse` (its published copy first) or another engine's warehouse (configured_source in
    activations/arrow_warehouse.py gives either). With no entries at all yet (a fresh install's
    first run), a page that says so."""
    if isinstance(warehouse, Path):
        readers: list[tuple[str, contextlib.AbstractContextManager[ArrowWarehouse]]] = [
            (str(p), DuckDBWarehouse(p).held()) for p in sources(warehouse)
        ]
        unreadable: tuple[type[Exception], ...] = (
            duckdb.CatalogException, duckdb.BinderException, duckdb.IOException,
        )  # fmt: skip
    else:
        readers = [(f"the {warehouse.dialect} warehouse", contextlib.nullcontext(warehouse))]
        unreadable = (Exception,)  # the engine's own (Spark's AnalysisException, ...)
    failures = []
    unknown: UnknownJourney | None = None
    last: Exception | None = None
    for source, opened in readers:
        try:
            with opened as read:  # one connection: every query reads the same copy
                journeys, page = _read(_Marts(read), source, journey)
            break
        except UnknownJourney as exc:  # a stale published copy: the working file may have it
            unknown = unknown or exc
        except unreadable as exc:
            failures.append(f"{source}: {exc}")
            last = exc
    else:
        if unknown is not None:
            raise unknown
        raise ReportError(
            "could not read the metrics marts this report reads ("
            + "; ".join(failures)
            + "): if they are not built yet, build them with a pipeline run (`make demo`, a "
            "Dagster run)"
        ) from last
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.tmp")
    partial.write_text(page, encoding="utf-8")
    partial.replace(output)  # a reader never sees half a report
    return Written(output, tuple(journeys), source)


def _read(marts: _Marts, source: str, journey: str | None) -> tuple[list[str], str]:
    journeys = _chosen_journeys(marts, source, journey)
    sections = [_journey_section(marts, name) for name in journeys]
    if not journeys:
        sections = ['<p class="empty">No journey has entries yet: the report fills in after '
                    "the journeys' first runs.</p>"]  # fmt: skip
    overall = _frequency_section(marts)
    title = f"Journey report: {journey}" if journey else "Journey report"
    return journeys, _page(title, source, journeys, sections, overall)


class _Marts:
    """The marts' rows for a query written in DuckDB's SQL over unqualified mart names, with `?`
    for the journey: parsed by sqlglot, the journey bound as a literal (never pasted into the
    text), each mart named in dbt's schema, and read in the warehouse's dialect."""

    def __init__(self, warehouse: ArrowWarehouse) -> None:
        self.warehouse = warehouse

    def __call__(self, sql: str, journey: str | None = None) -> list[dict[str, Any]]:
        def bind(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Placeholder):
                if journey is None:
                    raise ValueError(f"a query with ? needs a journey: {sql}")
                return exp.Literal.string(journey)
            if isinstance(node, exp.Table) and not node.db:
                return relation(node.name)
            return node

        query = sqlglot.parse_one(sql, read="duckdb").transform(bind)
        assert isinstance(query, exp.Query)
        rows = read_table(self.warehouse, query).to_pylist()
        return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    """A whole-number Decimal (DuckDB's sum of integers is a 128-bit integer, a Decimal in
    Arrow) as an int, as Spark gives it; a fractional one as a float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _chosen_journeys(marts: _Marts, source: str, journey: str | None) -> list[str]:
    rows = marts("select distinct journey from fct_journey_entries order by 1")
    journeys = [r["journey"] for r in rows]
    if journey is None:
        return journeys
    if journey not in journeys:
        raise UnknownJourney(
            f"journey {journey!r} has no entries in {source}; "
            f"journeys with entries: {', '.join(journeys)}"
        )
    return [journey]


def _journey_section(marts: _Marts, journey: str) -> str:
    parts = [f'<section id="journey-{escape(journey)}"><h2>{escape(journey)}</h2>']
    parts.append(_overview(marts, journey))
    parts.append(_funnel(marts, journey))
    parts.append(_experiments(marts, journey))
    parts.append(_channel_mix(marts, journey))
    parts.append(_attribution(marts, journey))
    parts.append("</section>")
    return "\n".join(parts)


def _overview(marts: _Marts, journey: str) -> str:
    (row,) = marts(
        """
        select count(*) as entries, count(distinct current_person_id) as people,
            count(converted_at) as conversions,
            count(case when ended_at is null then 1 end) as active
        from fct_journey_entries where journey = ?
        """,
        journey,
    )
    # listed here, not by string_agg(distinct ... order by ...): Spark 4 fails on its listagg
    versions = marts(
        "select distinct journey_version from fct_journey_entries "
        "where journey = ? and journey_version is not null order by 1",
        journey,
    )
    row["versions"] = ", ".join(r["journey_version"] for r in versions)
    return (
        f'<p class="overview">{row["entries"]:,} entries by {row["people"]:,} people; '
        f"{row['conversions']:,} converted; {row['active']:,} active now. "
        f"Versions: {escape(row['versions'] or '')}.</p>"
    )


def _funnel(marts: _Marts, journey: str) -> str:
    steps = marts(
        """
        select step, min(step_order) as step_order, sum(reached) as reached, sum(sent) as sent,
            sum(opened) as opened, sum(clicked) as clicked, sum(converted) as converted,
            sum(dropped_off) as dropped_off, sum(here_now) as here_now
        from fct_journey_funnel
        where journey = ? and arm = 'treatment'
        group by step order by step_order, step
        """,
        journey,
    )
    if not steps:
        return _empty("Funnel", "no treatment entries yet")
    labels = [r["step"] for r in steps]
    chart = charts.grouped_bars(
        f"{journey} funnel",
        labels,
        {k: [float(r[k]) for r in steps] for k in ("reached", "sent", "opened", "converted")},
    )
    table = _table(
        ["step", "reached", "sent", "opened", "clicked", "converted", "dropped off", "here now"],
        [
            [r["step"], r["reached"], r["sent"], r["opened"], r["clicked"], r["converted"],
             r["dropped_off"], r["here_now"]]
            for r in steps
        ],
    )  # fmt: skip
    note = "Treatment entries of every version and split path (fct_journey_funnel)."
    return f'<div class="chart"><h3>Funnel</h3><p class="note">{note}</p>{chart}{table}</div>'


def _experiments(marts: _Marts, journey: str) -> str:
    arms = marts(
        """
        select experiment, variant, baseline_variant, people, conversions, conversion_rate,
            conversion_lift, conversion_lift_low, conversion_lift_high,
            conversion_relative_lift, conversion_relative_lift_low,
            conversion_relative_lift_high, revenue_per_person, revenue_per_person_lift,
            revenue_per_person_lift_low, revenue_per_person_lift_high, is_readable
        from fct_journey_experiments
        where journey = ? and not is_baseline
        order by experiment, variant
        """,
        journey,
    )
    if not arms:
        return _empty("Experiments", "no holdout or split with two arms yet")
    drawn = [
        (f"{r['experiment']}: {r['variant']} vs {r['baseline_variant']}", r["conversion_lift"],
         r["conversion_lift_low"], r["conversion_lift_high"], bool(r["is_readable"]))
        for r in arms
        if r["conversion_lift_low"] is not None
    ]  # fmt: skip
    chart = charts.intervals(f"{journey} conversion lift", drawn) if drawn else ""
    table = _table(
        ["experiment", "arm", "people", "conversion", "lift (95% CI)", "relative lift",
         "revenue/person", "revenue lift (95% CI)", "readable"],
        [
            [r["experiment"], f"{r['variant']} vs {r['baseline_variant']}", r["people"],
             _percent(r["conversion_rate"]),
             _interval(r, "conversion_lift", _points),
             _interval(r, "conversion_relative_lift", _signed_percent),
             _money(r["revenue_per_person"]),
             _interval(r, "revenue_per_person_lift", _money),
             "yes" if r["is_readable"] else "not yet"]
            for r in arms
        ],
    )  # fmt: skip
    note = (
        "Intention to treat: a person converted on a goal event in its window after their "
        "exposure, whatever the journey did. Conversion lift in percentage points with its "
        "95% interval (Newcombe's hybrid score method), relative lift with Katz's, revenue per "
        "person with the normal approximation (Welch); a hollow dot is not readable yet (too "
        "few people or conversions)."
    )
    return f'<div class="chart"><h3>Experiments</h3><p class="note">{note}</p>{chart}{table}</div>'


def _interval(row: dict[str, Any], name: str, fmt: Callable[[float | None], str]) -> str:
    if row[name] is None:
        return "n/a"
    if row[f"{name}_low"] is None:
        return fmt(row[name])
    return f"{fmt(row[name])} [{fmt(row[f'{name}_low'])}, {fmt(row[f'{name}_high'])}]"


def _channel_mix(marts: _Marts, journey: str) -> str:
    rows = marts(
        """
        select week, channel, sum(sent) as sent
        from fct_channel_performance
        where journey = ? and sent > 0
        group by week, channel order by week, channel
        """,
        journey,
    )
    if not rows:
        return _empty("Channel mix", "nothing sent yet")
    weeks = sorted({r["week"] for r in rows})
    channels = sorted({r["channel"] for r in rows})
    sent: dict[tuple[dt.date, str], float] = {(r["week"], r["channel"]): r["sent"] for r in rows}
    chart = charts.stacked_columns(
        f"{journey} messages sent per week",
        [w.isoformat() for w in weeks],
        {c: [float(sent.get((w, c), 0)) for w in weeks] for c in channels},
    )
    return f'<div class="chart"><h3>Channel mix over time</h3>{chart}</div>'


def _attribution(marts: _Marts, journey: str) -> str:
    rows = marts(
        f"""
        select step || coalesce(' (' || channel || ')', '') as touch,
            {", ".join(f"sum({m}_credit) as {m}" for m in ATTRIBUTION_MODELS)}
        from fct_conversion_attribution
        where journey = ? and arm = 'treatment'
        group by 1 order by 1
        """,
        journey,
    )
    if not rows:
        return _empty("Attribution", "no conversions yet")
    total = sum(float(r["linear"]) for r in rows)
    labels = [r["touch"] for r in rows]
    chart = charts.grouped_bars(
        f"{journey} attribution shares",
        labels,
        {m.replace("_", " "): [float(r[m]) / total for r in rows] for m in ATTRIBUTION_MODELS},
        percent=True,
    )
    note = (
        f"Shares of {total:,.0f} treatment conversions credited to the messages before them "
        "(fct_conversion_attribution); each model's shares add up to 100%."
    )
    return f'<div class="chart"><h3>Attribution</h3><p class="note">{note}</p>{chart}</div>'


def _frequency_section(marts: _Marts) -> str:
    rows = marts(
        """
        select case when messages >= 5 then '5+' else cast(messages as varchar) end as bucket,
            count(*) as person_weeks
        from fct_person_weekly_messages group by 1
        """,
    )
    if rows:
        counts = {r["bucket"]: float(r["person_weeks"]) for r in rows}
        chart = charts.grouped_bars(
            "messages per person per week",
            [f"{b} message{'s' if b != '1' else ''}" for b in FREQUENCY_BUCKETS],
            {"person-weeks": [counts.get(b, 0.0) for b in FREQUENCY_BUCKETS]},
        )
        note = (
            "How many messages people received in a week, across every journey and channel "
            "(fct_person_weekly_messages): the frequency caps' effect as people feel it."
        )
        body = (
            f'<div class="chart"><h3>Messages per person per week</h3><p class="note">{note}</p>'
            f"{chart}</div>"
        )
    else:
        body = _empty("Messages per person per week", "nothing sent yet")
    return f'<section id="frequency"><h2>Across journeys</h2>{body}</section>'


def _empty(title: str, why: str) -> str:
    return f'<div class="chart"><h3>{escape(title)}</h3><p class="empty">No data: {why}.</p></div>'


def _table(header: list[str], body: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f} pt"


def _signed_percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.1f}%"


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 980px; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta, .note, .empty { color: #666; font-size: 0.9rem; }
.chart { margin: 1.2rem 0 2rem; } svg { display: block; margin: 0.5rem 0; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85rem; margin-top: 0.5rem; }
th, td { border-bottom: 1px solid #eee; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
nav a { margin-right: 1rem; }
"""


def _page(title: str, source: str, journeys: list[str], sections: list[str], overall: str) -> str:
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f'<a href="#journey-{escape(j)}">{escape(j)}</a>' for j in journeys)
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">Made {made} from {escape(source)}. The tables behind each chart '
        "are in models/metrics (docs/metrics.md).</p>"
        f'<nav>{nav} <a href="#frequency">across journeys</a></nav>'
        + "\n".join(sections)
        + overall
        + "</body></html>\n"
    )
