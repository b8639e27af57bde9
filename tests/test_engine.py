"""The journey engine and guards as pure functions: scenarios in, decisions out."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import duckdb
import jsonschema
import pytest

from activations import engine, guards
from activations.journeys import (
    CHANNELS,
    FrequencyCap,
    Journey,
    JourneyDefinitionError,
    Step,
    Template,
    journey_schema,
    load_journeys,
)
from activations.ledger import (
    SUPERSEDED,
    LedgerState,
    LedgerStatus,
    PendingAttempt,
    SendRef,
    SkipReason,
    send_key,
)
from activations.render import MissingTemplateVariable, TemplateProblem, money, render
from activations.tick import DueSend, send_key_sql
from switchyard import cli
from switchyard.tiers import TIERS, TierName

T = datetime(2026, 11, 2, 10, 0)
TPL = {
    "email": Template(body="Hi {first_name}", subject="s"),
    "sms": Template(body="Hi"),
    "push": Template(body="b", title="t"),
}
JOURNEY = Journey(
    name="j",
    audience_model="audience_j",
    tier="seconds",
    nodes=(
        Step("first", 0, ("email", "sms"), TPL, expires_after_hours=24),
        Step("second", 24 * 60, ("push",), TPL, expires_after_hours=24),
    ),
    exit_on=("purchase_completed",),
    frequency_cap=FrequencyCap(1, 24),
)


def empty_ledger() -> LedgerState:
    return LedgerState(last_status={}, attempts={}, sends_by_person={})


def entry(**kw: object) -> engine.Entry:
    return engine.Entry(**{"entry_id": "e1", "person_id": "p1", "enters_at": T, **kw})  # type: ignore[arg-type]


def steps_of(due: list[engine.Due]) -> list[str]:
    return [d.step.name for d in due]


def test_send_key_is_deterministic_and_distinct() -> None:
    assert send_key("j", "s", "p", "e") == send_key("j", "s", "p", "e")
    assert len({send_key("j", s, p, "e") for s in "ab" for p in "xy"}) == 4


def due(step: str = "first", at: datetime = T, arm: str = "treatment") -> DueSend:
    """What the tick hands on for entry e1 of p1 at `step`, due at `at`."""
    key = send_key("j", step, "p1", "e1")
    return DueSend("e1", "p1", step, key, at, T, arm, '{"sku": "tee"}')


def test_the_tick_and_the_ledger_derive_the_same_send_key() -> None:
    sql = send_key_sql("'j'", "'first'", "'p1'", "'e1'")
    ((key,),) = duckdb.sql(f"select {sql}").fetchall()
    assert key == send_key("j", "first", "p1", "e1")


def test_decided_keys_are_not_due_again() -> None:
    state = empty_ledger()
    state.last_status[send_key("j", "first", "p1", "e1")] = "sent"
    assert engine.classify(JOURNEY, [due()], state, T + timedelta(hours=1)) == ([], [])
    todo, _ = engine.classify(JOURNEY, [due()], empty_ledger(), T + timedelta(hours=1))
    assert [(d.step.name, d.entry.properties) for d in todo] == [("first", {"sku": "tee"})]


def test_attempt_without_outcome_is_retried_once_then_failed() -> None:
    state = empty_ledger()
    key = send_key("j", "first", "p1", "e1")
    state.last_status[key], state.attempts[key] = "attempted", 1
    todo, _ = engine.classify(JOURNEY, [due()], state, T + timedelta(hours=1))
    assert [(d.step.name, d.attempt_number) for d in todo] == [("first", 2)]
    state.attempts[key] = 2
    todo, skips = engine.classify(JOURNEY, [due()], state, T + timedelta(hours=1))
    assert todo == [] and [s.reason for s in skips] == ["outcome_unknown"]


def test_an_unsettled_attempt_of_an_entry_that_left_the_step_is_still_settled() -> None:
    state = empty_ledger()
    key = send_key("j", "first", "p1", "e1")
    state.refs[key] = SendRef(key, "j", "first", "p1", "e1")
    state.pending[key] = PendingAttempt("p1", "sms", "+1", None, "b", T, T)
    todo, skips = engine.classify(JOURNEY, [], state, T + timedelta(hours=1))
    assert todo == [] and [(s.ref.send_key, s.reason) for s in skips] == [(key, "exited")]


def test_a_holdout_entry_is_recorded_and_never_sent() -> None:
    todo, skips = engine.classify(JOURNEY, [due(arm="holdout")], empty_ledger(), T)
    assert todo == [] and [(s.ref.step, s.reason) for s in skips] == [("first", "holdout")]


def test_a_step_due_longer_ago_than_it_keeps_expires() -> None:
    late = T + timedelta(hours=25)
    todo, skips = engine.classify(
        JOURNEY, [due(), due("second", T + timedelta(hours=24))], empty_ledger(), late
    )
    assert [(s.ref.step, s.reason) for s in skips] == [("first", "expired")]
    assert [d.step.name for d in todo] == ["second"]


def person(**kw: object) -> guards.Person:
    base: dict[str, object] = {
        "person_id": "p1",
        "user_id": "u1",
        "email": "a@example.com",
        "phone": "+14155550123",
        "push_token": "tok",
        "first_name": None,
        "consent": {"email": "subscribed", "sms": "subscribed"},
    }
    return guards.Person(**{**base, **kw})  # type: ignore[arg-type]


def test_channel_choice_follows_consent_then_address() -> None:
    step = JOURNEY.steps[0]
    assert guards.choose_channel(step, person(), {}) == guards.Channel("email", "a@example.com")
    assert guards.choose_channel(step, person(email=None), {}) == guards.Channel(
        "sms", "+14155550123"
    )
    assert guards.choose_channel(step, person(email=None, phone=None), {}) == guards.NoChannel(
        SkipReason.NO_ADDRESS
    )
    assert guards.choose_channel(step, person(consent={}), {}) == guards.NoChannel(
        SkipReason.NO_CONSENT, "email: marketing consent none; sms: marketing consent none"
    )


def test_the_persons_most_engaged_channel_can_go_first() -> None:
    step = JOURNEY.steps[0]  # email, else sms
    texter = person(most_engaged_channel="sms")
    assert guards.choose_channel(step, texter, {}) == guards.Channel("email", "a@example.com")
    preferring = replace(step, most_engaged_first=True)
    assert guards.choose_channel(preferring, texter, {}) == guards.Channel("sms", "+14155550123")
    # Not reachable there any more: the declared order again.
    opted_out = {("u1", "sms", "marketing"): ("unsubscribed", T)}
    assert guards.choose_channel(preferring, texter, opted_out) == guards.Channel(
        "email", "a@example.com"
    )
    # A channel the step does not offer, or no engagement at all, changes nothing.
    for engaged in ("push", None):
        choice = guards.choose_channel(preferring, person(most_engaged_channel=engaged), {})
        assert choice == guards.Channel("email", "a@example.com")


def test_fresh_opt_out_beats_the_profile() -> None:
    fresh = {("u1", "email", "marketing"): ("unsubscribed", T)}
    assert guards.choose_channel(JOURNEY.steps[0], person(), fresh) == guards.Channel(
        "sms", "+14155550123"
    )


def test_frequency_cap_counts_every_journey_in_the_window() -> None:
    state = empty_ledger()
    assert not guards.over_cap(JOURNEY.frequency_cap, "p1", state, T)
    state.note_send("p1", T - timedelta(hours=23))
    assert guards.over_cap(JOURNEY.frequency_cap, "p1", state, T)
    assert not guards.over_cap(
        JOURNEY.frequency_cap, "p1", state, T + timedelta(hours=1, seconds=1)
    )
    assert not guards.over_cap(None, "p1", state, T)


def test_frequency_cap_follows_merged_and_split_person_ids() -> None:
    state = empty_ledger()
    state.note_send("p_young", T - timedelta(hours=2))  # before p_young merged into p_old
    state.note_send("p_split", T - timedelta(hours=3))  # before p_split lost people to p_new
    # Chains already followed by dim_person_aliases: p_young -> p_old, p_split -> p_new (p_split
    # still names someone, so it is among its own people: its own record stays its own).
    split_at = T - timedelta(hours=2, minutes=30)
    state.note_send("p_split", T - timedelta(hours=1))  # p_split's own, after the split
    state.follow_aliases(
        {"p_young": ["p_old"], "p_split": ["p_split", "p_new"], "p_old": ["p_newer"]},
        {("p_split", "p_new"): split_at, ("p_young", "p_old"): T - timedelta(hours=1)},
    )
    assert guards.over_cap(JOURNEY.frequency_cap, "p_old", state, T)
    assert guards.over_cap(JOURNEY.frequency_cap, "p_new", state, T)
    assert guards.over_cap(JOURNEY.frequency_cap, "p_split", state, T)
    # p_old's own record was empty: p_young's send, folded into it, is not passed on again
    assert not guards.over_cap(JOURNEY.frequency_cap, "p_newer", state, T)
    assert state.sends_within("p_old", T, 24) == 1
    # p_split lives on: what it sent after the split is its own only (a merged-away id's sends
    # all count, whenever recorded: it named no one else then)
    assert (state.sends_within("p_split", T, 24), state.sends_within("p_new", T, 24)) == (2, 1)


def recorded(
    state: LedgerState,
    person: str,
    status: LedgerStatus = "attempted",
    minute: int = 0,
    channel: str = "sms",
) -> str:
    """The key of step `first` of entry e1 under `person`, with one attempt recorded as
    `status` (`attempted`: its outcome unknown, a lookup must settle it)."""
    key = send_key("j", "first", person, "e1")
    state.last_status[key], state.attempts[key] = status, 1
    state.refs[key] = SendRef(key, "j", "first", person, "e1")
    if status == "attempted":
        at = T + timedelta(minutes=minute)
        state.pending[key] = PendingAttempt(person, channel, "+1", None, "Hi", at, at)
    return key


def test_a_step_sent_before_a_merge_is_not_sent_again_under_the_new_id() -> None:
    state = empty_ledger()
    recorded(state, "p_young", "sent")
    recorded(state, "p_other")  # its outcome unknown
    state.follow_aliases({"p_young": ["p_old"], "p_other": ["p_new"]})
    later = T + timedelta(hours=1)

    def at_first(person_id: str) -> DueSend:
        return replace(due(), person_id=person_id, send_key=send_key("j", "first", person_id, "e1"))

    todo, _ = engine.classify(JOURNEY, [at_first("p_old")], state, later)
    assert todo == []  # p_young's send holds for p_old
    todo, skips = engine.classify(JOURNEY, [at_first("p_new")], state, later)
    assert [(d.step.name, d.attempt_number) for d in todo] == [("first", 2)]  # once more, visibly
    # and the attempt under the old id is not settled as left on its own (its lookup would claim
    # the provider's message, and the new key's find nothing and send again)
    assert skips == []
    todo, _ = engine.classify(JOURNEY, [at_first("p_unrelated")], state, later)
    assert [d.step.name for d in todo] == ["first"]
    old_key, new_key = (send_key("j", "first", p, "e1") for p in ("p_other", "p_new"))
    # Not due, and the new key never decided on its own (the entry left first): the old key's
    # attempt is still its own to settle, as any entry's that left
    _, skips = engine.classify(JOURNEY, [], state, later)
    assert [(s.ref.send_key, s.reason) for s in skips] == [(old_key, SkipReason.EXITED)]
    # Once the new key has a final record of its own (the journey's decided keys say so), the
    # old one is superseded (not 'exited': the step went on under the new key)
    state.supersede([new_key])
    todo, skips = engine.classify(JOURNEY, [], state, later)
    assert todo == []
    assert [(s.ref.send_key, s.reason, s.detail) for s in skips] == [
        (old_key, SUPERSEDED, f"goes on as {new_key}")
    ]


def test_attempts_under_every_id_a_person_had_count_toward_the_retry_limit() -> None:
    # p_a merged into p_b, p_b into p0: attempts in doubt under both old ids and under p0
    state = empty_ledger()
    for minute, person in enumerate(("p_a", "p_b", "p0")):
        recorded(state, person, minute=minute, channel="email")
    state.follow_aliases({"p_a": ["p0"], "p_b": ["p0"]})
    new_key = send_key("j", "first", "p0", "e1")
    assert state.attempts[new_key] == 3  # not 1: the limit on sending again holds
    assert state.pending[new_key].last_attempted_at == T + timedelta(minutes=2)  # its own
    # without an attempt of its own, the latest of the old ones is the one to settle
    state = empty_ledger()
    for minute, person in enumerate(("p_a", "p_b")):
        recorded(state, person, minute=minute, channel="email")
    state.follow_aliases({"p_a": ["p0"], "p_b": ["p0"]})
    assert state.attempts[new_key] == 2
    assert state.pending[new_key].last_attempted_at == T + timedelta(minutes=1)
    assert state.pending[new_key].person_id == "p0"


def test_every_tier_name_has_one_schedule() -> None:
    assert set(TIERS) == set(get_args(TierName))
    assert all(name == tier.name for name, tier in TIERS.items())


def test_templates_format_money_plurals_and_times_in_the_persons_zone() -> None:
    tpl = Template(
        body="{quantity} {quantity | plural('item')} for {total | money('EUR')}"
        "[% if vip %], VIP[% endif %], ordered {at | date('%d %b %H:%M')}"
    )
    values = {"quantity": 2, "total": 1234.5, "vip": True, "at": "2026-11-02T23:30:00"}
    out = render(tpl, values, {}, "Europe/Berlin")
    assert out.body == "2 items for €1,234.50, VIP, ordered 03 Nov 00:30"
    one = render(tpl, {**values, "quantity": 1, "vip": False, "total": -3}, {}, None)
    assert one.body == "1 item for -€3.00, ordered 02 Nov 23:30"  # no zone: UTC
    assert money(1500, "JPY") == "¥1,500" and money("9.5", "CHF") == "9.50 CHF"


def test_a_template_cannot_reach_python_and_a_bad_value_is_a_problem_not_a_crash() -> None:
    with pytest.raises(TemplateProblem, match="unsafe"):
        render(Template(body="{sku.__class__.__mro__}"), {"sku": "mug"}, {})
    with pytest.raises(TemplateProblem, match="money: 'n/a' is not a number"):
        render(Template(body="{total | money}"), {"total": "n/a"}, {})
    with pytest.raises(MissingTemplateVariable):  # a key the value does not have
        render(Template(body="{cart.total}"), {"cart": {}}, {})
    # An event's property is untrusted: a huge number is refused, not formatted in full.
    with pytest.raises(TemplateProblem, match="out of range"):
        render(Template(body="{total | money}"), {"total": "9e999999999"}, {})
    # and a slip in a template cannot take the run down
    for runaway in ("[% for i in range(100000) %]x[% endfor %]", "{'x' * 1000000000}"):
        with pytest.raises(TemplateProblem):
            render(Template(body=runaway), {}, {})
    with pytest.raises(TemplateProblem, match="longer than"):
        render(Template(body="[% for i in range(999) %]{x}[% endfor %]"), {"x": "y" * 999}, {})


def test_render_uses_values_then_declared_fallbacks() -> None:
    tpl = Template(body="Hi {first_name}, {quantity} x {sku}", subject="{first_name}!")
    out = render(tpl, {"first_name": "Ada", "quantity": 2, "sku": "mug"}, {})
    assert (out.subject, out.body) == ("Ada!", "Hi Ada, 2 x mug")
    out = render(tpl, {"first_name": None, "quantity": 1, "sku": "cap"}, {"first_name": "there"})
    assert out.body == "Hi there, 1 x cap"
    with pytest.raises(MissingTemplateVariable) as missing:
        render(tpl, {"first_name": "Ada", "quantity": 1}, {})
    assert missing.value.name == "sku"


OK_JOURNEY: dict[str, Any] = {
    "name": "j",
    "entry": {"event": "cart_updated", "unless": "purchase_completed", "within_minutes": 60},
    "steps": [
        {"name": "a", "channels": ["email"], "templates": {"email": {"body": "b", "subject": "s"}}}
    ],
}


def with_step(**changes: object) -> dict[str, Any]:
    return {**OK_JOURNEY, "steps": [{**OK_JOURNEY["steps"][0], **changes}]}


@pytest.mark.parametrize(
    "declaration, error",
    [
        (with_step(channels=["email", "sms"]), r"step 'a': no template for channel\(s\) \['sms'\]"),
        (with_step(channels=["fax"]), r"steps\[0\] 'a'\.channels\[0\]: 'fax' is not one of"),
        ({"name": "j"}, r"\(the declaration\): 'steps' is a required property"),
        # A typo is refused, not ignored: `wait_minute` would have sent at once.
        (with_step(wait_minute=60), r"steps\[0\] 'a': .*'wait_minute' was unexpected"),
        # A misspelled tier would leave the journey without a schedule.
        (
            {**OK_JOURNEY, "tier": "hourz"},
            r"tier: 'hourz' is not one of \['seconds', 'hours', 'days'\]",
        ),
        (
            {**OK_JOURNEY, "frequency_cap": {"messages": 0, "per_hours": 24}},
            r"frequency_cap\.messages: 0 is less than",
        ),
        # An event name is matched in SQL: no quotes.
        ({**OK_JOURNEY, "exit_on": ["it's bought"]}, r"exit_on: .*is not valid under any"),
        ({k: v for k, v in OK_JOURNEY.items() if k != "entry"}, r"'entry' is a required property"),
        # A template that does not parse is refused at load, not at the first send.
        (
            with_step(templates={"email": {"body": "[% if vip %]Hi", "subject": "s"}}),
            r"step 'a': the email template's body does not parse: line 1: .*endif",
        ),
        (
            with_step(
                connected_content=[{"name": "recs", "url": "https://x", "on_failure": "fallback"}]
            ),
            r"connected content 'recs' falls back on failure but declares no `fallback`",
        ),
        (
            with_step(connected_content=[{"name": "recs", "url": "file:///etc/passwd"}]),
            r"connected_content\[0\]\.url: 'file:///etc/passwd' does not match",
        ),
    ],
)
def test_journey_declarations_are_checked(declaration: dict[str, Any], error: str) -> None:
    assert Journey.from_meta("m", OK_JOURNEY).steps[0].channels == ("email",)
    with pytest.raises(JourneyDefinitionError, match=error) as refused:
        Journey.from_meta("m", declaration, declared_in="models/audiences/_audiences__models.yml")
    assert str(refused.value).startswith(
        "journey declared on model 'm' in models/audiences/_audiences__models.yml"
    )


def test_every_error_of_a_declaration_is_listed_at_once() -> None:
    declaration = {**with_step(wait_minutes=-5, channels=["fax"]), "tier": "weekly"}
    with pytest.raises(JourneyDefinitionError) as refused:
        Journey.from_meta("m", declaration)
    assert len(str(refused.value).splitlines()) == 4  # where, then one line per error


def test_the_schema_knows_the_tiers_and_channels_the_code_runs() -> None:
    schema = journey_schema()
    assert schema["properties"]["tier"]["enum"] == list(TIERS)
    assert tuple(schema["$defs"]["channel"]["enum"]) == CHANNELS
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_bad_declaration_in_the_manifest_names_its_file(tmp_path: Path) -> None:
    node = {
        "resource_type": "model",
        "name": "audience_x",
        "patch_path": "switchyard://models/audiences/_audiences__models.yml",
        "config": {"meta": {"journey": {**OK_JOURNEY, "tier": "weekly"}}},
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": {"model.switchyard.audience_x": node}}))
    with pytest.raises(JourneyDefinitionError, match="audience_x' in models/audiences/_aud"):
        load_journeys(manifest)


def test_journeys_cli_validates_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["journeys", "validate"]) == 0
    assert capsys.readouterr().out.startswith("ok  cart_abandonment (seconds, 2 steps")
    assert cli.main(["journeys", "show", "cart_abandonment"]) == 0
    shown = capsys.readouterr().out
    assert "entry    cart_updated, unless purchase_completed within 60 min" in shown
    assert "2. push_nudge: send at entry + 1 d, expires after 24 h; push" in shown
    assert cli.main(["journeys", "show", "nope"]) == 1
    assert "declared: cart_abandonment" in capsys.readouterr().err


@pytest.mark.parametrize(
    "phone, email, expected",
    [
        ("+14155550123", "a@example.com", guards.Channel("sms", "+14155550123")),
        ("4155550123", "a@example.com", guards.Channel("email", "a@example.com")),  # falls back
        ("+1 415 555 0123", "a@example", None),
        ("+0155501234", "not an address", None),
        ("+1234567890123456", "a@@example.com", None),  # 16 digits
    ],
)
def test_a_malformed_address_is_never_sent_to(
    phone: str, email: str, expected: guards.Channel | None
) -> None:
    step = Step("s", 0, ("sms", "email"), {})
    texter = person(phone=phone, email=email, consent={"sms": "subscribed", "email": "subscribed"})
    choice = guards.choose_channel(step, texter, {})
    if expected is not None:
        assert choice == expected
    else:
        assert isinstance(choice, guards.NoChannel)
        assert choice.reason == SkipReason.INVALID_ADDRESS
        assert choice.detail == (
            f"sms: {phone!r} is not an E.164 number (+ and up to 15 digits); "
            f"email: {email!r} is not an email address"
        )
