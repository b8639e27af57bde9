"""Journey metrics count every decision the engine records: each skip reason has its column, and a
reason outside the declared set fails the build instead of vanishing from the funnel."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest

from activations import ledger
from activations.channels.fcm import DEAD_PUSH_TOKEN as FCM_DEAD
from activations.ledger import OUTCOME_UNKNOWN, DeferReason, SkipReason
from switchyard import events, landing
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import Scenario

T = datetime(2026, 11, 2, 12, 0)
METRICS = "+fct_journey_step_metrics"


def decide(paths: Paths, decisions: list[tuple[str, str]]) -> None:
    """One ledger line per (status, reason), each for its own person, as a run writes them."""
    writer = ledger.LedgerWriter(paths.landing, "metrics-test")
    for n, (status, reason) in enumerate(decisions):
        ref = ledger.SendRef(ledger.send_key("j", "s", f"p{n}", "e"), "j", "s", f"p{n}", "e")
        writer.write(ref, status, T, reason=reason)  # type: ignore[arg-type]
    writer.close()


def test_every_skip_reason_has_its_count(paths: Paths) -> None:
    decide(paths, [("skipped", r.value) for r in SkipReason] + [("failed", OUTCOME_UNKNOWN)])
    dbt_build(paths, METRICS)
    (row,) = query(paths, "select * from fct_journey_step_metrics")
    assert {r.value: row[f"skipped_{r.value}"] for r in SkipReason} == dict.fromkeys(
        [r.value for r in SkipReason], 1
    )
    assert row["skipped"] == len(SkipReason)
    assert (row["failed"], row["failed_outcome_unknown"], row["decisions"]) == (
        1,
        1,
        len(SkipReason) + 1,
    )


def test_every_defer_reason_has_its_count_and_a_refusal_outranks_its_attempt(
    paths: Paths,
) -> None:
    # A run with a fixed clock writes an attempt and the provider's refusal (deferred,
    # retrying) at one instant: the refusal is the key's state, as the ledger's reader has it.
    writer = ledger.LedgerWriter(paths.landing, "metrics-test")
    for n, reason in enumerate(DeferReason):
        ref = ledger.SendRef(ledger.send_key("j", "s", f"p{n}", "e"), "j", "s", f"p{n}", "e")
        if reason == DeferReason.RETRYING:
            writer.write(ref, "attempted", T, channel="sms", recipient="+14155550100", body="b")
        writer.write(ref, "deferred", T, reason=reason, reason_detail=f"until {T.isoformat()}")
    writer.close()
    dbt_build(paths, METRICS)
    rows = query(paths, "select delivery_status, reason from fct_deliveries")
    assert sorted((r["delivery_status"], r["reason"]) for r in rows) == sorted(
        ("deferred", r.value) for r in DeferReason
    )
    assert ledger.read_state(paths.landing).last_status == dict.fromkeys(
        [ledger.send_key("j", "s", f"p{n}", "e") for n in range(len(DeferReason))], "deferred"
    )
    (row,) = query(paths, "select * from fct_journey_step_metrics")
    assert {r.value: row[f"deferred_{r.value}"] for r in DeferReason} == dict.fromkeys(
        [r.value for r in DeferReason], 1
    )


def test_an_attempt_in_doubt_behind_a_refusal_is_unknown_and_a_dead_letter_counted(
    paths: Paths,
) -> None:
    # As the ledger's reader has them: p0's first attempt got no answer and its second was
    # refused (one attempt may have gone out: unknown); p1's two attempts were both refused
    # (deferred); p2 was dead-lettered.
    writer = ledger.LedgerWriter(paths.landing, "metrics-test")
    refs = [
        ledger.SendRef(ledger.send_key("j", "s", f"p{n}", "e"), "j", "s", f"p{n}", "e")
        for n in range(3)
    ]
    text = {"channel": "sms", "recipient": "+14155550100", "body": "b"}
    refused = {"reason": "retrying", "reason_detail": f"until {T.isoformat()}; HTTP 429", **text}
    for minute, (ref, status, columns) in enumerate(
        [
            (refs[0], "attempted", text), (refs[0], "unknown", text),
            (refs[0], "attempted", text), (refs[0], "deferred", refused),
            (refs[1], "attempted", text), (refs[1], "deferred", refused),
            (refs[1], "attempted", text), (refs[1], "deferred", refused),
            (refs[2], "failed", {"reason": "attempts_exhausted", **text}),
        ]
    ):  # fmt: skip
        writer.write(ref, status, T + timedelta(minutes=minute), **columns)  # type: ignore[arg-type]
    writer.close()
    dbt_build(paths, METRICS)
    rows = query(
        paths,
        "select person_id, delivery_status, attempt_count, refusal_count from fct_deliveries",
    )
    assert sorted(tuple(r.values()) for r in rows) == [
        ("p0", "unknown", 2, 1),
        ("p1", "deferred", 2, 2),
        ("p2", "failed", 0, 0),
    ]
    state = ledger.read_state(paths.landing)
    assert [state.doubtful(r.send_key) for r in refs[:2]] == [1, 0]
    (row,) = query(paths, "select * from fct_journey_step_metrics")
    assert (row["unknown_outcome"], row["deferred_retrying"]) == (1, 1)
    assert (row["failed"], row["failed_attempts_exhausted"]) == (1, 1)


def test_an_undeclared_skip_reason_fails_the_build(paths: Paths) -> None:
    decide(paths, [("skipped", "because")])
    with pytest.raises(AssertionError, match="accepted_values_stg_ledger__deliveries_reason"):
        dbt_build(paths, METRICS)


def test_ledger_lines_from_before_reason_detail_still_build(paths: Paths) -> None:
    # Earlier runs wrote the missing variable into the reason and had no reason_detail column.
    ref = ledger.SendRef(ledger.send_key("j", "s", "p0", "e"), "j", "s", "p0", "e")
    old = {
        "send_key": ref.send_key, "run_id": "old", "journey": "j", "step": "s",
        "person_id": "p0", "entry_id": "e", "status": "skipped",
        "reason": "missing_template_variable:first_name", "recorded_at": T.isoformat(),
    }  # fmt: skip
    # and then 'missing_template_variable' with the name in reason_detail
    ref2 = ledger.SendRef(ledger.send_key("j", "s", "p1", "e"), "j", "s", "p1", "e")
    later = {**old, "send_key": ref2.send_key, "person_id": "p1",
             "reason": "missing_template_variable", "reason_detail": "cart_total"}  # fmt: skip
    landing.write_batch(paths.landing, "ledger", "deliveries", [old, later], prefix="run-old")
    dbt_build(paths, METRICS)
    rows = query(paths, "select reason, reason_detail from fct_deliveries order by 2")
    assert rows == [
        {"reason": "missing_variable", "reason_detail": "cart_total"},
        {"reason": "missing_variable", "reason_detail": "first_name"},
    ]
    (metrics,) = query(paths, "select skipped_missing_variable as n from fct_journey_step_metrics")
    assert metrics == {"n": 2}


def test_holdout_assignment_is_stable_and_keeps_its_share(paths: Paths) -> None:
    # The dbt macro over 4,000 people, on the warehouse: a 10% holdout by md5 of journey and
    # person, the same as computed here, and within four standard deviations of 400.
    sql = (
        "select 'p' || range as person_id, "
        "{{ journey_arm('cart', \"'p' || range\", 10) }} as arm from range(4000)"
    )
    shown = dbt_build(paths, command="show", extra=["--inline", sql, "--limit", "-1",
                                                    "--output", "json"])  # fmt: skip
    rows = json.loads(shown[shown.index("{") :])["show"]
    arms = {r["person_id"]: r["arm"] for r in rows}
    expected = {
        f"p{n}": "holdout"
        if int(hashlib.md5(f"cart:p{n}".encode()).hexdigest()[:8], 16) % 10000 < 1000
        else "treatment"
        for n in range(4000)
    }
    assert arms == expected
    assert 400 - 4 * 19 <= sum(a == "holdout" for a in arms.values()) <= 400 + 4 * 19


def test_what_came_back_about_each_send_is_one_engagement_row(paths: Paths) -> None:
    writer = ledger.LedgerWriter(paths.landing, "engagement-test")
    refs = {
        name: ledger.SendRef(ledger.send_key("j", "s", name, "e"), "j", "s", name, "e")
        for name in ("mail", "push", "text")
    }
    link = "https://prefs.example/unsubscribe/eyJhbGci.eyJhdWQi.nPK-B1mu"
    writer.write(refs["mail"], "sent", T, channel="email", body=f"Stop: {link} Bye")
    writer.write(refs["text"], "sent", T, channel="sms")
    # FCM answered UNREGISTERED at send time: the app is gone, push's bounce
    writer.write(refs["push"], "failed", T, channel="push", reason=FCM_DEAD)
    writer.close()

    def heard(
        n: int, ref: str, provider: str, channel: str, event: str, minute: int
    ) -> dict[str, str]:
        at = T.replace(minute=minute).isoformat() + "Z"
        return {"event_id": f"ev{n}", "send_key": refs[ref].send_key, "provider": provider,
                "channel": channel, "event": event, "occurred_at": at}  # fmt: skip

    feedback = [
        heard(1, "mail", "sendgrid", "email", "delivered", 1),
        heard(2, "mail", "sendgrid", "email", "open", 5),
        heard(3, "mail", "sendgrid", "email", "open", 7),
        heard(3, "mail", "sendgrid", "email", "open", 7),  # delivered twice by SendGrid: one open
        heard(4, "mail", "sendgrid", "email", "click", 6),
        heard(5, "mail", "switchyard", "email", "unsubscribe", 9),  # the signed link
        heard(6, "text", "twilio", "sms", "undelivered", 2),
    ]
    landing.write_batch(paths.landing, "feedback", "events", feedback, prefix="hooks")
    dbt_build(paths, "+fct_message_engagement")
    rows = {
        r["send_key"]: r
        for r in query(
            paths,
            "select send_key, channel, opens, clicks, delivered_at is not null as delivered, "
            "minute(first_opened_at) as opened, minute(first_clicked_at) as clicked, "
            "minute(delivery_failed_at) as failed, minute(unsubscribed_at) as unsubscribed "
            "from fct_message_engagement",
        )
    }
    mail, push, text = (rows[refs[n].send_key] for n in ("mail", "push", "text"))
    # a signed link is its person's credential: the marts never show its token
    (sent,) = query(paths, "select body from stg_ledger__deliveries where body is not null")
    assert sent["body"] == "Stop: https://prefs.example/unsubscribe/redacted Bye"
    assert (mail["opens"], mail["clicks"], mail["delivered"]) == (2, 1, True)
    assert (mail["opened"], mail["clicked"], mail["unsubscribed"], mail["failed"]) == (
        5,
        6,
        9,
        None,
    )
    assert (push["channel"], push["failed"], push["opens"]) == ("push", 0, 0)
    assert (text["failed"], text["delivered"]) == (2, False)


def test_sends_the_guards_should_have_stopped_are_listed_and_checked(paths: Paths) -> None:
    # Welcome declares at most 1 message per 24 h; cart_abandonment is a marketing journey too.
    s = Scenario(paths.landing)
    s.person("ann", email="ann@example.com", consent=("email",)).person("bob").person("cy")
    s.opt_out("ann", "email", T)
    s.land()
    suppression = events.suppression
    landing.write_batch(paths.landing, "preferences", "suppressions", [
        suppression("sup1", "sms", "cy-token", "suppressed", "all", "STOP", "twilio", T),
        suppression("sup2", "email", "cy@example.com", "suppressed", "marketing", "unsubscribe",
                    "sendgrid", T),
        suppression("sup3", "email", "cy@example.com", "lifted", "marketing", "resubscribed",
                    "preference_center", T + timedelta(minutes=30)),
    ])  # fmt: skip
    # Everything the check reads but the ledger (views over the landing files read at query
    # time), then, once the ledger is written, the check alone.
    dbt_build(paths, "+fct_guard_violations", extra=["--exclude", "fct_guard_violations"])
    people = {
        r["user_id"]: r["person_id"]
        for r in query(
            paths,
            "select identifier_value as user_id, person_id from dim_identities "
            "where identifier_type = 'user_id'",
        )
    }
    writer = ledger.LedgerWriter(paths.landing, "audit-test")

    def sent(
        key: str, journey: str, user: str, hours: float, channel: str = "push", **kw: str
    ) -> None:
        ref = ledger.SendRef(key, journey, "s", people[user], "e")
        status = "failed" if kw.get("reason") else "sent"
        recipient = kw.pop("recipient", f"{user}-token")
        writer.write(ref, status, T + timedelta(hours=hours), channel=channel,  # type: ignore[arg-type]
                     recipient=recipient, **kw)  # fmt: skip

    sent("k1", "welcome", "bob", 0)
    sent("k2", "welcome", "bob", 2)  # one within 24 h: over the cap
    sent("k3", "cart_abandonment", "bob", 30)  # 28 h after k2: fine
    sent("k4", "welcome", "bob", 54)  # 24 h after k3 exactly: fine
    sent("k4", "welcome", "bob", 54.1)  # accepted twice
    # An attempt whose outcome stayed unknown counts toward the cap, as the guard counts it.
    sent("k11", "welcome", "bob", 100, reason=OUTCOME_UNKNOWN)
    sent("k12", "welcome", "bob", 101)
    sent("k5", "cart_abandonment", "ann", -30, "email")  # before the opt-out
    sent("k6", "cart_abandonment", "ann", 1, "email")  # after it
    sent("k7", "cart_abandonment", "ann", 26, "sms")  # another channel
    sent("k8", "cart_abandonment", "cy", 1, "sms")  # after his STOP
    sent("k9", "cart_abandonment", "cy", 30, "email", recipient="Cy@Example.com")  # lifted
    writer.close()
    output = dbt_build(paths, "fct_guard_violations")
    found = query(
        paths, "select violation, send_key, detail from fct_guard_violations order by send_key"
    )
    assert [(r["violation"], r["send_key"]) for r in found] == [
        ("over_frequency_cap", "k12"),
        ("over_frequency_cap", "k2"),
        ("duplicate_send", "k4"),
        ("sent_after_opt_out", "k6"),
        ("sent_to_suppressed_address", "k8"),
    ]
    detail = {r["send_key"]: r["detail"] for r in found}
    assert detail["k2"] == "2 sends within 24.0 h; the cap is 1"
    assert detail["k6"].startswith("marketing unsubscribed at 2026-11-02 12:00")
    assert detail["k8"].startswith("all suppressed (STOP) at 2026-11-02 12:00")
    # Each kind is its own warning test: Dagster shows it as a check on fct_guard_violations.
    for check in ("duplicate_sends", "sends_over_frequency_cap", "sends_after_opt_out",
                  "sends_to_suppressed_addresses"):  # fmt: skip
        assert f"Warning in test audit_{check}" in output
    # cart_abandonment is capped by the project's policy (dbt_project.yml vars.frequency_cap,
    # one a day), read as the guards read it: over 48 h, four of its sends are over it too.
    policy = {"messages": 1, "per_hours": 48}
    dbt_build(paths, "fct_guard_violations", dbt_vars={"frequency_cap": policy})
    over = query(
        paths,
        "select send_key, detail from fct_guard_violations where violation like 'over%' "
        "order by send_key",
    )
    assert [(r["send_key"], r["detail"]) for r in over] == [
        ("k12", "2 sends within 24.0 h; the cap is 1"),  # welcome's own cap
        ("k2", "2 sends within 24.0 h; the cap is 1"),
        ("k3", "3 sends within 48.0 h; the cap is 1"),  # cart's, the policy's: k1, k2
        ("k6", "2 sends within 48.0 h; the cap is 1"),  # k5, 31 h before
        ("k7", "2 sends within 48.0 h; the cap is 1"),  # k6, 25 h before
        ("k9", "2 sends within 48.0 h; the cap is 1"),  # k8, 29 h before
    ]
