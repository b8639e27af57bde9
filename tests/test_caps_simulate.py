"""`switchyard caps simulate`: a cap policy replayed over the ledger's past sends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activations import ledger
from activations.cap_policy import CapPolicy
from activations.caps_simulate import simulate
from switchyard import cli, landing

T = datetime(2026, 11, 20, 12, 0)


def sent(home: Path, person: str, journey: str, channel: str, at: datetime, n: int) -> None:
    writer = ledger.LedgerWriter(home, f"r{n}")
    ref = ledger.SendRef(f"k{n}", journey, "s", person, f"e{n}")
    writer.write(ref, "attempted", at, channel=channel)
    writer.write(ref, "sent", at, channel=channel)
    writer.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    # Ann: a cart push, a welcome email 2 h later, a receipt, a cart SMS 30 h later.
    sent(tmp_path, "ann", "cart", "push", T, 1)
    sent(tmp_path, "ann", "welcome", "email", T + timedelta(hours=2), 2)
    sent(tmp_path, "ann", "receipts", "email", T + timedelta(hours=3), 3)
    sent(tmp_path, "ann", "cart", "sms", T + timedelta(hours=30), 4)
    # Bob: one message only. And an attempt whose outcome is unknown does not count as sent.
    sent(tmp_path, "bob", "cart", "push", T + timedelta(hours=1), 5)
    writer = ledger.LedgerWriter(tmp_path, "r6")
    writer.write(ledger.SendRef("k6", "cart", "s", "bob", "e6"), "attempted", T, channel="push")
    writer.close()
    return tmp_path


def test_a_held_back_message_frees_its_place_and_exempt_journeys_do_not_count(home: Path) -> None:
    policy = CapPolicy(1, 24, frozenset({"receipts"}))
    results = {(r.journey, r.channel): (r.sent, r.held_back) for r in simulate(
        home, policy, until=T + timedelta(days=2))}  # fmt: skip
    assert results == {
        ("cart", "push"): (2, 0),
        ("welcome", "email"): (1, 1),  # 2 h after the push
        ("cart", "sms"): (1, 0),  # 30 h after the push: the held-back email did not count
    }
    # two a day: nothing held back but, without the exemption, the receipt (the third in 3 h)
    two = simulate(home, CapPolicy(2, 24), T + timedelta(days=2))
    assert [(r.journey, r.held_back) for r in two if r.held_back] == [("receipts", 1)]


def test_the_window_before_counts_but_is_not_reported(home: Path) -> None:
    # from T+25h: only the SMS is in the window, and the push 30 h before is past its 24 h
    results = simulate(home, CapPolicy(1, 36), until=T + timedelta(days=2), days=23 / 24)
    assert [(r.journey, r.channel, r.sent, r.held_back) for r in results] == [
        ("cart", "sms", 1, 1)  # under 36 h: the push at T still counts (warm-up window)
    ]


def test_the_command_prints_the_table_and_refuses_a_bad_policy(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHYARD_LANDING_DIR", str(home))
    policy = home / "policy.json"
    policy.write_text(json.dumps({"messages": 1, "per_hours": 24}))
    until = (T + timedelta(days=2)).isoformat()
    assert cli.main(["caps", "simulate", "--policy", str(policy), "--until", until]) == 0
    out = capsys.readouterr().out
    assert "cap 1 per 24 h" in out and "welcome" in out
    # the receipt counts here; welcome, under a cap of its own in the project, is never held
    # back by the policy (as at send time), only counted
    assert out.splitlines()[-1].split() == ["all", "5", "1"]
    assert "counted but never held back: welcome" in out
    policy.write_text(json.dumps({"messages": 0, "per_hours": 24}))
    assert cli.main(["caps", "simulate", "--policy", str(policy), "--until", until]) == 2
    assert "messages must be at least 1" in capsys.readouterr().err


def test_a_calendar_day_policy_counts_by_the_persons_own_day(home: Path) -> None:
    # Ann's push at 12:00 UTC, email at 14:00, receipt at 15:00. In New York those fall on one
    # day; in Noumea (UTC+11) the push is at 23:00 and the email at 01:00 the next day.
    daily = CapPolicy(1, 24, calendar_day=True)
    until = T + timedelta(days=2)

    def held(**kw: Any) -> dict[tuple[str, str], int]:
        return {(r.journey, r.channel): r.held_back for r in simulate(home, daily, until, **kw)}

    new_york = held(timezones={"ann": "America/New_York"})
    assert (new_york[("welcome", "email")], new_york[("receipts", "email")]) == (1, 1)
    noumea = held(timezones={"ann": "Pacific/Noumea"})
    assert (noumea[("welcome", "email")], noumea[("receipts", "email")]) == (0, 1)
    # no zone known: the policy's default
    assert held() == held(timezones={"ann": "UTC"})
    # the project's transactional journeys, passed in, neither count nor are held back
    exempt = held(exempt={"receipts"}, timezones={"ann": "Pacific/Noumea"})
    assert ("receipts", "email") not in exempt and exempt[("welcome", "email")] == 0


def test_a_policy_file_may_say_calendar_day_and_a_zone(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"messages": 2, "calendar_day": True, "default_timezone": "Asia/Tokyo"})
    )
    policy = CapPolicy.from_file(path)
    assert (policy.calendar_day, policy.default_timezone, policy.per_hours) == (
        True,
        "Asia/Tokyo",
        24,
    )
    path.write_text(json.dumps({"messages": 1, "default_timezone": "Mars/Base"}))
    with pytest.raises(ValueError, match="not an IANA time zone"):
        CapPolicy.from_file(path)
    path.write_text(json.dumps({"messages": 1, "per_day": 1}))
    with pytest.raises(ValueError, match="unknown keys"):
        CapPolicy.from_file(path)


def test_a_journey_under_its_own_cap_counts_but_is_never_held_back(tmp_path: Path) -> None:
    # At send time the project's policy holds back only journeys without a cap of their own.
    landing.ensure_layout(tmp_path)
    sent(tmp_path, "bob", "welcome", "email", T, 1)
    sent(tmp_path, "bob", "welcome", "email", T + timedelta(hours=1), 2)
    sent(tmp_path, "bob", "cart", "push", T + timedelta(hours=2), 3)
    policy = CapPolicy(1, 24)
    until = T + timedelta(days=1)
    results = {(r.journey, r.held_back) for r in simulate(tmp_path, policy, until)}
    assert results == {("welcome", 1), ("cart", 1)}
    own = {
        (r.journey, r.held_back) for r in simulate(tmp_path, policy, until, own_caps={"welcome"})
    }
    assert own == {("welcome", 0), ("cart", 1)}  # welcome's two count: the cart push is held
