"""Journey measurement (models/metrics): on a small journey whose every number is worked out by
hand below, the funnel, the experiment, attribution, retention, channel performance and messages
per person come out exactly so."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from activations import ledger, transitions
from switchyard import cli, events, landing
from switchyard.report import write_report
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query

T = datetime(2026, 11, 2, 9, 0)  # a Monday
# A declared journey: its goal (purchase_completed within 72 h) decides experiment conversions.
JOURNEY = "cart_abandonment"
Z = 1.959963984540054  # two-sided 95%
MARTS = [
    "fct_journey_funnel",
    "fct_journey_funnel_daily",
    "fct_journey_experiments",
    "fct_conversion_attribution",
    "fct_journey_retention",
    "fct_channel_performance",
    "fct_person_weekly_messages",
]
POLARS_TYPES = {"VARCHAR": pl.Utf8, "INTEGER": pl.Int32, "TIMESTAMP": pl.Datetime("us")}


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def write_transitions(
    paths: Paths, rows: list[dict[str, Any]], version: str = "v1", journey: str = JOURNEY
) -> None:
    """Rows as a tick would land them (activations/transitions.py's columns)."""
    full = [
        dict.fromkeys(transitions.COLUMNS)
        | {"journey": journey, "journey_version": version, "run_id": "test"}
        | row
        for row in rows
    ]
    schema = {n: POLARS_TYPES[kind] for n, kind in transitions.COLUMNS.items()}
    folder = transitions.ensure_folder(paths.landing)
    pl.DataFrame(full, schema=schema).write_parquet(folder / f"tick-{journey}-{version}.parquet")


def entry(
    entry_id: str, person: str, at: datetime, moves: list[tuple[str, str, datetime, str]],
    arm: str = "treatment",
) -> list[dict[str, Any]]:  # fmt: skip
    """An entry's transitions: entered at `first step`, then (node, reason, when, detail) each."""
    first, *rest = moves
    rows = [{"entry_id": entry_id, "person_id": person, "seq": 0, "node": first[0],
             "reached_at": at, "entered_at": at, "arm": arm, "reason": "entered"}]  # fmt: skip
    previous = first[0]
    for seq, (node, reason, when, detail) in enumerate(rest, start=1):
        rows.append({"entry_id": entry_id, "person_id": person, "seq": seq,
                     "from_node": previous, "node": node, "reached_at": when, "entered_at": at,
                     "arm": arm, "reason": reason, "detail": detail})  # fmt: skip
        previous = node
    return rows


def sent(writer: ledger.LedgerWriter, step: str, person: str, entry_id: str, channel: str,
         at: datetime, deferred_first: bool = False) -> str:  # fmt: skip
    ref = ledger.SendRef(ledger.send_key(JOURNEY, step, person, entry_id), JOURNEY, step, person,
                         entry_id)  # fmt: skip
    if deferred_first:
        writer.write(ref, "deferred", at - timedelta(hours=2), reason="capped")
    writer.write(ref, "attempted", at, channel=channel)
    writer.write(ref, "sent", at, channel=channel)
    return ref.send_key


def skipped(writer: ledger.LedgerWriter, step: str, person: str, entry_id: str, reason: str,
            at: datetime) -> None:  # fmt: skip
    ref = ledger.SendRef(ledger.send_key(JOURNEY, step, person, entry_id), JOURNEY, step, person,
                         entry_id)  # fmt: skip
    writer.write(ref, "skipped", at, reason=reason)


@pytest.fixture(scope="module")
def measured(module_paths: Paths) -> Paths:
    """Six people in the journey (email_1, then push_2; goal: a purchase within 72 h):
    e1 (u1): email sent at +1h (delivered, opened, clicked), push sent at +25h after the cap held
        it, completed, converted at +30h;
    e2 (u2): email sent at +1h (delivered), converted at +5h while at push_2;
    e3 (u3): entered a day later, email skipped (no consent), waiting at push_2 now;
    e4 (u4): exited at email_1 at +0.5h (on_cap exit), then purchased at +10h: no conversion
        for the engine, one for the experiment (intention to treat);
    e5 (u5): holdout: both steps skipped, completed at +25h, converted at +26h;
    e6 (u6): holdout, waiting at push_2.
    Purchases (events) at the conversions, u4's, and two outside the goal's window.
    Orders: u1 100 at +30h, 40 at +10d, 25 at +20d; u2 50 at +5h, 10 at +48h; u3 20 at +40d;
    u5 80 at +26h, 30 at +5d."""
    paths = module_paths
    landing.ensure_layout(paths.landing)
    people = [
        events.identify(T - timedelta(days=1), user_id=f"u{n}", traits={"email": f"u{n}@x.test"})
        for n in range(1, 7)
    ] + [
        events.track("purchase_completed", h(at), user_id=u, properties={})
        # u3's before it entered, u6's after the goal's 72 h: neither converts
        for u, at in (("u1", 30), ("u2", 5), ("u4", 10), ("u5", 26), ("u3", 20), ("u6", 80))
    ]
    landing.write_batch(paths.landing, "segment", "events", people, prefix="test")
    orders = [("o1", "u1", h(30), 100), ("o2", "u1", h(240), 40), ("o3", "u2", h(5), 50),
              ("o4", "u2", h(48), 10), ("o5", "u3", h(960), 20), ("o6", "u5", h(26), 80),
              ("o7", "u1", h(480), 25), ("o8", "u5", h(120), 30)]  # fmt: skip
    landing.write_batch(
        paths.landing,
        "shop",
        "orders",
        [events.order(o, at, user_id=u, email=None, total=t) for o, u, at, t in orders],
        prefix="test",
    )
    dbt_build(paths, "+dim_identities")
    person = {
        r["user_id"]: r["person_id"]
        for r in query(
            paths,
            "select identifier_value as user_id, person_id from dim_identities "
            "where identifier_type = 'user_id'",
        )
    }
    p1, p2, p3, p4, p5, p6 = (person[f"u{n}"] for n in range(1, 7))
    write_transitions(
        paths,
        entry("e1", p1, T, [("email_1", "", T, ""), ("push_2", "sent", h(1), "k"),
                            ("(completed)", "sent", h(25), "k"),
                            ("(converted)", "converted", h(30), "purchase_completed")])
        + entry("e2", p2, T, [("email_1", "", T, ""), ("push_2", "sent", h(1), "k"),
                              ("(converted)", "converted", h(5), "purchase_completed")])
        + entry("e3", p3, h(24), [("email_1", "", h(24), ""), ("push_2", "skipped", h(25), "k")])
        + entry("e4", p4, T, [("email_1", "", T, ""), ("(exited)", "exited", h(0.5), "capped: k")])
        + entry("e5", p5, T, [("email_1", "", T, ""), ("push_2", "skipped", h(1), "k"),
                              ("(completed)", "skipped", h(25), "k"),
                              ("(converted)", "converted", h(26), "purchase_completed")],
                arm="holdout")
        + entry("e6", p6, T, [("email_1", "", T, ""), ("push_2", "skipped", h(1), "k")],
                arm="holdout"),
    )  # fmt: skip
    writer = ledger.LedgerWriter(paths.landing, "measurement-test")
    k1 = sent(writer, "email_1", p1, "e1", "email", h(1))
    sent(writer, "push_2", p1, "e1", "push", h(25), deferred_first=True)
    k2 = sent(writer, "email_1", p2, "e2", "email", h(1))
    skipped(writer, "email_1", p3, "e3", "no_consent", h(25))
    skipped(writer, "email_1", p5, "e5", "holdout", h(1))
    skipped(writer, "push_2", p5, "e5", "holdout", h(25))
    skipped(writer, "email_1", p6, "e6", "holdout", h(1))
    writer.close()
    feedback = [("f1", k1, "delivered", h(1.1)), ("f2", k1, "open", h(2)),
                ("f3", k1, "click", h(3)), ("f4", k2, "delivered", h(1.1))]  # fmt: skip
    landing.write_batch(
        paths.landing,
        "feedback",
        "events",
        [events.feedback_event(i, k, "sendgrid", "email", e, at) for i, k, e, at in feedback],
        prefix="test",
    )
    dbt_build(paths, *(f"+{m}" for m in MARTS))
    return paths


def rows(paths: Paths, sql: str) -> list[dict[str, Any]]:
    return query(paths, sql)


def test_the_funnel_counts_each_step(measured: Paths) -> None:
    funnel = {
        (r["arm"], r["step"]): r
        for r in rows(measured, f"select * from fct_journey_funnel where journey = '{JOURNEY}'")
    }
    assert set(funnel) == {
        ("treatment", "email_1"),
        ("treatment", "push_2"),
        ("holdout", "email_1"),
        ("holdout", "push_2"),
    }
    keys = ["entries", "reached", "sent", "delivered", "opened", "clicked", "converted",
            "went_on", "here_now", "completed_here", "converted_here", "dropped_off",
            "exited_frequency_cap", "step_order"]  # fmt: skip
    assert {k: funnel["treatment", "email_1"][k] for k in keys} == {
        "entries": 4, "reached": 4, "sent": 2, "delivered": 2, "opened": 1, "clicked": 1,
        "converted": 2, "went_on": 3, "here_now": 0, "completed_here": 0, "converted_here": 0,
        "dropped_off": 1, "exited_frequency_cap": 1, "step_order": 0,
    }  # fmt: skip
    assert {k: funnel["treatment", "push_2"][k] for k in keys} == {
        "entries": 4, "reached": 3, "sent": 1, "delivered": 0, "opened": 0, "clicked": 0,
        "converted": 2, "went_on": 0, "here_now": 1, "completed_here": 1, "converted_here": 1,
        "dropped_off": 0, "exited_frequency_cap": 0, "step_order": 1,
    }  # fmt: skip
    assert funnel["treatment", "email_1"]["drop_off_rate"] == pytest.approx(0.25)
    assert funnel["treatment", "push_2"]["reach_rate"] == pytest.approx(0.75)
    holdout = funnel["holdout", "push_2"]
    assert (holdout["entries"], holdout["reached"], holdout["sent"], holdout["converted"]) == (
        2,
        2,
        0,
        1,
    )
    assert {r["journey_version"] for r in funnel.values()} == {"v1"}


def test_the_daily_funnel_dates_each_happening_and_sums_to_all_time(measured: Paths) -> None:
    daily = rows(
        measured,
        "select activity_date, reached, sent, opened, converted from fct_journey_funnel_daily "
        "where arm = 'treatment' and step = 'email_1' order by activity_date",
    )
    assert [(str(r["activity_date"]), r["reached"], r["sent"], r["opened"], r["converted"])
            for r in daily] == [("2026-11-02", 3, 2, 1, 1), ("2026-11-03", 1, 0, 0, 1)]  # fmt: skip
    (mismatch,) = rows(
        measured,
        """
        select count(*) as n from fct_journey_funnel f
        full join (
            select journey, journey_version, arm, split_path, step, sum(reached) as reached,
                sum(sent) as sent, sum(went_on) as went_on, sum(dropped_off) as dropped_off
            from fct_journey_funnel_daily group by all
        ) d using (journey, journey_version, arm, split_path, step)
        where (f.reached, f.sent, f.went_on, f.dropped_off)
            is distinct from (d.reached, d.sent, d.went_on, d.dropped_off)
        """,
    )
    assert mismatch == {"n": 0}


def newcombe(x1: int, n1: int, x0: int, n0: int, z: float = Z) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p0, from its published formula."""

    def wilson(x: int, n: int) -> tuple[float, float]:
        p = x / n
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    p1, p0 = x1 / n1, x0 / n0
    (l1, u1), (l0, u0) = wilson(x1, n1), wilson(x0, n0)
    d = p1 - p0
    return d - math.hypot(p1 - l1, u0 - p0), d + math.hypot(u1 - p1, p0 - l0)


def test_the_holdout_experiment_compares_people_and_revenue(measured: Paths) -> None:
    arms = {
        r["variant"]: r
        for r in rows(
            measured, f"select * from fct_journey_experiments where journey = '{JOURNEY}'"
        )
    }
    treatment, holdout = arms["treatment"], arms["holdout"]
    assert holdout["is_baseline"] and not treatment["is_baseline"]
    # intention to treat: u4's purchase after its exit counts, though the engine recorded none
    assert (treatment["people"], treatment["conversions"], treatment["revenue"]) == (4, 3, 225)
    assert (holdout["people"], holdout["conversions"], holdout["revenue"]) == (2, 1, 110)
    assert treatment["conversion_lift"] == pytest.approx(0.25)
    low, high = newcombe(3, 4, 1, 2)
    assert (treatment["conversion_lift_low"], treatment["conversion_lift_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    # Katz: ln(1.5) +- z * sqrt(1/3 - 1/4 + 1/1 - 1/2)
    spread = Z * math.sqrt(1 / 3 - 1 / 4 + 1 - 1 / 2)
    assert [treatment[f"conversion_relative_lift{s}"] for s in ("", "_low", "_high")] == [
        pytest.approx(0.5),
        pytest.approx(1.5 * math.exp(-spread) - 1),
        pytest.approx(1.5 * math.exp(spread) - 1),
    ]
    # revenue per person, 30 days from entering: [165, 60, 0, 0] against [110, 0]
    assert treatment["revenue_per_person"] == pytest.approx(56.25)
    se = math.sqrt(statistics.variance([165, 60, 0, 0]) / 4 + statistics.variance([110, 0]) / 2)
    assert [treatment[f"revenue_per_person_lift{s}"] for s in ("", "_low", "_high")] == [
        pytest.approx(1.25),
        pytest.approx(1.25 - Z * se),
        pytest.approx(1.25 + Z * se),
    ]
    assert treatment["is_readable"] is False
    assert holdout["conversion_lift"] is None


def test_splits_compare_treatment_entries_with_control_each_person_in_one_arm(
    paths: Paths,
) -> None:
    landing.ensure_layout(paths.landing)
    goal = ("(converted)", "converted", h(2), "goal")

    def split_entry(entry_id: str, person: str, path: str, converts: bool, **kw: Any) -> Any:
        moves = [("ab", "", T, ""), (f"to_{path}", "split", T, path)] + ([goal] if converts else [])
        return entry(entry_id, person, kw.pop("at", T), moves, **kw)

    write_transitions(
        paths,
        split_entry("j1", "pa", "control", False) + split_entry("j2", "pb", "b", False)
        + split_entry("j3", "pc", "b", True)
        # holdout entries walk the split unsent: not in the split's comparison
        + split_entry("j4", "pd", "b", True, arm="holdout")
        # pa again, in the holdout (as after a merge): counted in the arm seen first only, by
        # its entries there (this conversion is the holdout entry's)
        + split_entry("j5", "pa", "control", True, arm="holdout", at=h(48)),
        journey="js",
    )  # fmt: skip
    # a split path may be named holdout: the baseline is still control, else the first by name
    write_transitions(
        paths,
        entry("k1", "pe", T, [("cd", "", T, ""), ("to_h", "split", T, "holdout")])
        + entry("k2", "pf", T, [("cd", "", T, ""), ("to_a", "split", T, "a")]),
        journey="js2",
    )
    write_transitions(paths, entry("n1", "pz", T, [("only", "", T, "")]), journey="no_holdout")
    dbt_build(paths, "+fct_journey_experiments")
    found = {
        (r["journey"], r["experiment"], r["variant"]): (
            r["people"], r["conversions"], r["is_baseline"], r["conversion_lift"],
            r["conversion_relative_lift"],
        )
        for r in rows(paths, "select * from fct_journey_experiments")
    }  # fmt: skip
    assert found == {
        ("js", "holdout", "treatment"): (
            3, 1, False, pytest.approx(1 / 3 - 1), pytest.approx(1 / 3 - 1)
        ),
        ("js", "holdout", "holdout"): (1, 1, True, None, None),
        ("js", "ab", "control"): (1, 0, True, None, None),
        # no conversion in the baseline: no ratio to read
        ("js", "ab", "b"): (2, 1, False, pytest.approx(0.5), None),
        ("js2", "cd", "a"): (1, 0, True, None, None),
        ("js2", "cd", "holdout"): (1, 0, False, 0, None),
    }  # fmt: skip


def test_attribution_shares_each_conversion_by_four_models(measured: Paths) -> None:
    credit = {
        (r["entry_id"], r["step"]): r
        for r in rows(measured, "select * from fct_conversion_attribution")
    }
    assert set(credit) == {("e1", "email_1"), ("e1", "push_2"), ("e2", "email_1"),
                           ("e5", "(no message)")}  # fmt: skip
    email, push = credit["e1", "email_1"], credit["e1", "push_2"]
    assert (email["first_touch_credit"], push["first_touch_credit"]) == (1, 0)
    assert (email["last_touch_credit"], push["last_touch_credit"]) == (0, 1)
    assert (email["linear_credit"], push["linear_credit"]) == (0.5, 0.5)
    # converted at +30h: the email is 29 h old, the push 5 h; half-life 24 h
    w_email, w_push = 0.5 ** (29 / 24), 0.5 ** (5 / 24)
    assert email["time_decay_credit"] == pytest.approx(w_email / (w_email + w_push), abs=1e-12)
    assert credit["e2", "email_1"]["time_decay_credit"] == 1
    totals = rows(
        measured,
        "select sum(first_touch_credit) f, sum(last_touch_credit) l, sum(linear_credit) li, "
        f"sum(time_decay_credit) td from fct_conversion_attribution where journey = '{JOURNEY}'",
    )
    (conversions,) = rows(
        measured,
        f"select count(converted_at) n from fct_journey_entries where journey = '{JOURNEY}'",
    )
    assert conversions["n"] == 3
    assert all(v == pytest.approx(3) for v in totals[0].values())


def test_retention_counts_orders_after_the_journey_against_the_holdout(measured: Paths) -> None:
    by_arm = {r["arm"]: r for r in rows(measured, "select * from fct_journey_retention")}
    keep = ["cohort_week", "people", "buyers", "repeat_buyers", "orders", "revenue"]
    # u1 completed at +25h and converted at +30h, with the order of 100: what came after is 40
    # and 25; u2 converted at +5h with its 50: after, 10; u4 exited (on the cap) and bought
    # nothing after. The holdout's u5 likewise: 30 after (u6 has not ended).
    assert {k: by_arm["treatment"][k] for k in keep} == {
        "cohort_week": T.date(), "people": 3, "buyers": 2, "repeat_buyers": 1, "orders": 3,
        "revenue": 75,
    }  # fmt: skip
    assert {k: by_arm["holdout"][k] for k in keep} == {
        "cohort_week": T.date(), "people": 1, "buyers": 1, "repeat_buyers": 0, "orders": 1,
        "revenue": 30,
    }  # fmt: skip


def test_channel_performance_and_frequency_per_person(measured: Paths) -> None:
    channels = {
        r["channel"]: r
        for r in rows(
            measured, f"select * from fct_channel_performance where journey = '{JOURNEY}'"
        )
    }
    email, push, none = channels["email"], channels["push"], channels["none"]
    assert (email["sent"], email["delivered"], email["opened"], email["clicked"]) == (2, 2, 1, 1)
    assert email["open_rate"] == pytest.approx(0.5)
    assert (push["sent"], push["held_by_cap"]) == (1, 1)
    assert (email["held_by_cap"], none["decisions"], none["sent"]) == (0, 4, 0)
    weekly = rows(
        measured,
        "select messages, email_messages, push_messages from fct_person_weekly_messages "
        "order by messages desc",
    )
    assert weekly == [
        {"messages": 2, "email_messages": 1, "push_messages": 1},
        {"messages": 1, "email_messages": 1, "push_messages": 0},
    ]


def test_the_report_renders_offline_in_a_browser(
    measured: Paths, browser: Any, tmp_path: Path
) -> None:
    written = write_report(measured.duckdb, tmp_path / "report.html")
    html = written.path.read_text()
    assert not re.search(r"<(script|link|img)\b", html)  # nothing to fetch, nothing to run
    page = browser.new_page()
    problems: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(written.path.as_uri())
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert problems == []
    assert fetched == [written.path.as_uri()]
    # the funnel, the lift, the channel mix and the attribution, then the frequency across journeys
    assert page.locator(f"#journey-{JOURNEY} svg").count() == 4
    assert page.locator("#frequency svg").count() == 1
    funnel = page.locator(f"#journey-{JOURNEY} table").first.inner_text()
    assert "email_1\t4\t2\t1\t1\t2\t1\t0" in funnel  # reached, sent, opened, clicked, ...
    assert "+25.0 pt" in page.locator(f"#journey-{JOURNEY}").inner_text()
    assert shot.stat().st_size > 20_000
    page.close()


def test_the_report_names_the_journeys_it_can_show(
    measured: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", "--journey", "nope"]) == 2
    assert "journey 'nope' has no entries" in capsys.readouterr().err
    assert cli.main(["report", "--journey", JOURNEY, "--out", str(measured.home / "r.html")]) == 0
    assert f"#journey-{JOURNEY}" in (measured.home / "r.html").read_text()


# A simulated experiment: 400 people per arm, the holdout converting at 10% and the treatment at
# 13% (a true lift of 3 points), drawn again for each seed.
N, P_HOLDOUT, P_TREATMENT, SEEDS = 400, 0.10, 0.13, 200


def test_a_simulated_lift_is_recovered_within_its_interval(paths: Paths) -> None:
    landing.ensure_layout(paths.landing)
    rows_: list[dict[str, Any]] = []
    for seed in range(SEEDS):
        draw = random.Random(seed)
        for n in range(2 * N):
            arm, p = ("treatment", P_TREATMENT) if n < N else ("holdout", P_HOLDOUT)
            moves = [("step", "", T, "")]
            if draw.random() < p:
                moves.append(("(converted)", "converted", h(1), "goal"))
            rows_ += entry(f"s{seed}-{n}", f"s{seed}-p{n}", T, moves, arm=arm)
    for row in rows_:
        row["journey"] = f"sim_{int(row['entry_id'][1:].split('-')[0]):03d}"
    write_transitions(paths, rows_)
    dbt_build(paths, "+fct_journey_experiments")
    results = rows(
        paths,
        "select journey, conversions, baseline_conversions, conversion_lift_low as low, "
        "conversion_lift_high as high from fct_journey_experiments where variant = 'treatment'",
    )
    assert len(results) == SEEDS
    for r in results:  # the mart's interval is Newcombe's, as published
        assert (r["low"], r["high"]) == pytest.approx(
            newcombe(r["conversions"], N, r["baseline_conversions"], N), abs=1e-12
        )
    true_lift = P_TREATMENT - P_HOLDOUT
    covered = sum(r["low"] <= true_lift <= r["high"] for r in results) / SEEDS
    # A 95% interval covers the truth in 95% of seeds on average, so a finite run of seeds lands
    # on either side of it: allowed three binomial standard deviations below (a Wald interval
    # of half the width covers about 67%, one from the wrong formula far less).
    assert covered >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / SEEDS), covered


def test_the_interval_covers_at_least_95_percent_over_every_possible_outcome(paths: Paths) -> None:
    # The limit of infinitely many seeds: every outcome (x1 of N converting under treatment, x0
    # of N under holdout) weighted by its binomial probability, with the interval the dbt macro
    # computes for it.
    def pmf(k: int, p: float) -> float:
        log = math.lgamma(N + 1) - math.lgamma(k + 1) - math.lgamma(N - k + 1)
        return math.exp(log + k * math.log(p) + (N - k) * math.log(1 - p))

    likely = range(10, 100)  # outside, each arm's probability is below 1e-9 in total
    bounds = f"{likely.start}, {likely.stop}"
    grid_sql = f"from range({bounds}) a(x1), range({bounds}) b(x0)"
    sql = (
        f"select x1, x0, {{{{ newcombe_bound('x1', {N}, 'x0', {N}, -1) }}}} as low, "
        f"{{{{ newcombe_bound('x1', {N}, 'x0', {N}, 1) }}}} as high {grid_sql}"
    )
    shown = dbt_build(paths, command="show",
                      extra=["--inline", sql, "--limit", "-1", "--output", "json"])  # fmt: skip
    grid = json.loads(shown[shown.index("{") :])["show"]
    assert len(grid) == len(likely) ** 2
    true_lift = P_TREATMENT - P_HOLDOUT
    mass = sum(pmf(r["x1"], P_TREATMENT) * pmf(r["x0"], P_HOLDOUT) for r in grid)
    coverage = sum(
        pmf(r["x1"], P_TREATMENT) * pmf(r["x0"], P_HOLDOUT)
        for r in grid
        if r["low"] <= true_lift <= r["high"]
    )
    assert mass > 1 - 1e-8
    assert coverage >= 0.95, coverage


def test_before_any_entry_the_report_says_so(paths: Paths, tmp_path: Path) -> None:
    # a fresh install's first days-tier run ends with the report: it must not fail the run
    landing.ensure_layout(paths.landing)
    dbt_build(paths, "+fct_journey_entries", "+fct_person_weekly_messages")
    written = write_report(paths.duckdb, tmp_path / "report.html")
    assert written.journeys == ()
    assert "No journey has entries yet" in written.path.read_text()


def test_transitions_landed_before_versions_read_as_unversioned_after_prepare(paths: Paths) -> None:
    # An upgraded home: every transitions file, the placeholder too, predates journey_version;
    # `switchyard prepare` (what `make` runs) rewrites the placeholder before dbt reads them.
    landing.ensure_layout(paths.landing)
    folder = transitions.folder(paths.landing)
    old = [n for n in transitions.COLUMNS if n != "journey_version"]
    rows_ = entry("e1", "p1", T, [("step", "", T, "")])
    frame = pl.DataFrame(
        [{n: r.get(n) for n in old} | {"journey": JOURNEY} for r in rows_],
        schema={n: POLARS_TYPES[transitions.COLUMNS[n]] for n in old},
    )
    frame.head(0).write_parquet(folder / transitions.PLACEHOLDER)
    frame.write_parquet(folder / "tick-old.parquet")
    assert cli.main(["prepare"]) == 0
    dbt_build(paths, "+fct_journey_entries")
    assert rows(paths, "select entry_id, journey_version from fct_journey_entries") == [
        {"entry_id": "e1", "journey_version": "unversioned"}
    ]


def test_retention_takes_no_merged_duplicate_for_an_ending(paths: Paths) -> None:
    landing.ensure_layout(paths.landing)
    write_transitions(
        paths,
        # pm's treatment entry was closed as a duplicate when their ids merged; the holdout one
        # (begun later) ended: pm's arm is treatment (first entered), and they never ended there
        entry("mb", "pm", T, [("s", "", T, ""),
                              ("(exited)", "exited", h(1), "merged: in the journey already")])
        + entry("ma", "pm", h(0.5), [("s", "", h(0.5), ""), ("(completed)", "sent", h(2), "k")],
                arm="holdout")
        + entry("n1", "pn", T, [("s", "", T, ""), ("(completed)", "sent", h(2), "k")]),
        journey="jr",
    )  # fmt: skip
    dbt_build(paths, "+fct_journey_retention")
    assert rows(paths, "select arm, people from fct_journey_retention") == [
        {"arm": "treatment", "people": 1}
    ]
