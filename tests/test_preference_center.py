"""Signed links in messages, served by the collector: RFC 8058 one-click unsubscribe and the
preference center (driven in headless Chromium), landing consents that the send-time guard
reads without a rebuild."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from activations.inbox import tokens
from intake.collector import CollectorSettings, create_app
from intake.consent_index import ConsentIndex
from intake.preference_center import Topic
from switchyard import events, landing, preference_links, signed_tokens
from switchyard.clock import parse_utc
from switchyard.preference_links import AUDIENCE, LinkSigner, LinkSubject
from tests.servers import serving
from tests.test_collector import ROTATE

SECRET = "link-secret-for-tests-0123456789abcdef"
TOPICS = (Topic("cart_reminders"), Topic("vip_offers", opt_in=True))
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def rows(home: Path, source: str, table: str, wanted: int) -> list[dict[str, Any]]:
    """The rows in closed files once there are `wanted` of them (within a few rotations)."""
    folder = landing.table_dir(home, source, table)
    deadline = time.monotonic() + 20 * ROTATE
    while True:
        found = [
            json.loads(line)
            for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines()
            if line
        ]
        if len(found) >= wanted:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {wanted} rows landed"
        time.sleep(ROTATE / 4)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[LinkSigner, Path]]:
    landing.ensure_layout(tmp_path)
    settings = CollectorSettings(
        tmp_path, {"wk": "web"}, ROTATE, link_secret=SECRET, preference_topics=TOPICS
    )
    with serving(create_app(settings)) as url:
        yield LinkSigner(url, SECRET), tmp_path


def test_a_link_is_signed_for_its_purpose_and_expires() -> None:
    signer = LinkSigner("https://prefs.example", SECRET)
    subject = LinkSubject("email", "u-ada", topic="cart_reminders", send_key="k1")
    token = signer.token(subject, now=1000)
    assert preference_links.read(SECRET, token, now=2000) == subject
    too_late = 1000 + preference_links.DEFAULT_LIFETIME_SECONDS
    refusals = {
        "expired": lambda: preference_links.read(SECRET, token, now=too_late),
        "signature": lambda: preference_links.read("x" * 40, token, now=2000),
        # an inbox token under the same secret opens no preferences, and a link no inbox: each
        # purpose signs with its own key derived from the secret
        "signature ": lambda: preference_links.read(SECRET, tokens.issue(SECRET, "u-ada")),
    }
    for why, attempt in refusals.items():
        with pytest.raises(preference_links.TokenError, match=why):
            attempt()
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify(SECRET, signer.token(subject))
    # and where the keys agree, the audience still tells them apart
    own = signed_tokens.issue(SECRET.encode(), {"sub": "u", "exp": 9e9, "aud": [AUDIENCE]})
    with pytest.raises(tokens.TokenError, match="something else"):
        tokens.verify(SECRET, own)
    # another JWT library's audience is no bar to an inbox token; an endless expiry is no expiry
    theirs = signed_tokens.issue(SECRET.encode(), {"sub": "u", "exp": 9e9, "aud": "my-app"})
    assert tokens.verify(SECRET, theirs) == "u"
    endless = signed_tokens.issue(SECRET.encode(), {"sub": "u", "exp": 10**400})
    with pytest.raises(tokens.TokenError, match="no expiry"):
        tokens.verify(SECRET, endless)
    # a person known only by an address: the address, and never both
    by_address = preference_links.read(SECRET, signer.token(LinkSubject("email", None, "a@x.io")))
    assert (by_address.user_id, by_address.address) == (None, "a@x.io")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        LinkSigner("https://prefs.example", "short")
    with pytest.raises(ValueError, match="SWITCHYARD_COLLECTOR_PUBLIC_URL"):
        LinkSigner.from_env({"SWITCHYARD_LINK_SECRET": SECRET})
    plain = {"SWITCHYARD_LINK_SECRET": SECRET, "SWITCHYARD_COLLECTOR_PUBLIC_URL": "http://x.io"}
    with pytest.raises(ValueError, match="https"):
        LinkSigner.from_env(plain)
    local = {**plain, "SWITCHYARD_COLLECTOR_PUBLIC_URL": "http://127.0.0.1:8040"}
    assert LinkSigner.from_env(local) == LinkSigner("http://127.0.0.1:8040", SECRET)
    assert LinkSigner.from_env({}) is None


def test_one_click_unsubscribes_and_a_get_never_does(collector: tuple[LinkSigner, Path]) -> None:
    signer, home = collector
    unsubscribe, _ = signer.urls(
        LinkSubject("email", "u-ada", topic="cart_reminders", send_key="k1")
    )
    # a mail scanner opening the link: a page with the button, nothing landed
    page = httpx.get(unsubscribe)
    assert page.status_code == 200 and "Unsubscribe from cart reminders by email?" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    # a POST without RFC 8058's body, a forged and an expired link: refused, nothing landed
    assert httpx.post(unsubscribe, content=b"x=1", headers=FORM).status_code == 400
    forged = unsubscribe[:-4] + ("AAAA" if not unsubscribe.endswith("AAAA") else "BBBB")
    assert httpx.post(forged, headers=FORM, **ONE_CLICK).status_code == 400
    stale = LinkSigner(signer.base_url, SECRET, lifetime=1).urls(LinkSubject("email", "u-ada"))[0]
    time.sleep(1.1)
    refused = httpx.post(stale, headers=FORM, **ONE_CLICK)
    assert refused.status_code == 400 and "expired" in refused.text
    # a link checker's HEAD is a GET: nothing lands
    assert httpx.head(unsubscribe).status_code == 200
    # the mailbox provider's one click, url-encoded, then multipart (RFC 8058 prefers it)
    done = httpx.post(unsubscribe, headers=FORM, **ONE_CLICK)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    multipart = httpx.post(unsubscribe, files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200 and "You are unsubscribed" in multipart.text
    consents = rows(home, "preferences", "consents", 2)
    assert {(c["user_id"], c["channel"], c["topic"], c["status"]) for c in consents} == {
        ("u-ada", "email", "cart_reminders", "unsubscribed")
    }
    assert {c["source"] for c in consents} == {"one_click_unsubscribe"}
    feedback = rows(home, "feedback", "events", 2)
    assert {(f["send_key"], f["event"], f["provider"]) for f in feedback} == {
        ("k1", "unsubscribe", "switchyard")
    }
    # someone known only by their address: the address is suppressed for marketing
    by_address, _ = signer.urls(LinkSubject("email", None, "lee@example.com", send_key="k2"))
    assert httpx.post(by_address, headers=FORM, **ONE_CLICK).status_code == 200
    (held,) = rows(home, "preferences", "suppressions", 1)
    assert (held["address"], held["scope"], held["status"]) == (
        "lee@example.com",
        "marketing",
        "suppressed",
    )


def test_unconfigured_links_say_what_to_set(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    with serving(create_app(CollectorSettings(tmp_path, {"wk": "web"}, ROTATE))) as url:
        answer = httpx.post(f"{url}/unsubscribe/abc", **ONE_CLICK)
    assert answer.status_code == 404 and "SWITCHYARD_LINK_SECRET" in answer.text


def test_the_preference_center_shows_and_changes_subscriptions_in_a_browser(
    collector: tuple[LinkSigner, Path], browser: Any, tmp_path: Path
) -> None:
    signer, home = collector
    # what Ada said before: email marketing yes, SMS marketing no, no cart reminders by SMS
    said = [
        events.consent("u-ada", "email", "subscribed", parse_utc("2026-01-01T00:00:00Z")),
        events.consent("u-ada", "sms", "unsubscribed", parse_utc("2026-01-02T00:00:00Z")),
        events.consent(
            "u-ada",
            "sms",
            "unsubscribed",
            parse_utc("2026-01-02T00:00:00Z"),
            topic=" Cart_Reminders",
        ),  # fmt: skip
        # another person's choice is not Ada's
        events.consent("u-bob", "push", "subscribed", parse_utc("2026-01-03T00:00:00Z")),
    ]
    landing.write_batch(home, "preferences", "consents", said, prefix="forms")
    _, preferences = signer.urls(LinkSubject("email", "u-ada", send_key="k1"))
    page = browser.new_page()
    page.goto(preferences)
    assert page.title() == "Your subscriptions"

    def ticked() -> dict[str, bool]:
        boxes = page.locator("input[type=checkbox]")
        return {
            boxes.nth(i).get_attribute("name"): boxes.nth(i).is_checked()
            for i in range(boxes.count())
        }

    assert ticked() == {
        "email:marketing": True,
        "sms:marketing": False,
        "push:marketing": False,  # never said: marketing needs a yes
        "email:cart_reminders": True,  # never said: a topic holds only on a no
        "sms:cart_reminders": False,
        "push:cart_reminders": True,
        "email:vip_offers": False,  # opt-in topic: only on a yes
        "sms:vip_offers": False,
        "push:vip_offers": False,
    }
    page.uncheck("#email\\:marketing")
    page.check("#push\\:vip_offers")
    page.click("text=Save my choices")
    page.wait_for_selector("text=Saved: 2 change(s).")
    after = ticked()
    assert after["email:marketing"] is False and after["push:vip_offers"] is True
    shot = tmp_path / "preference_center.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
    if folder := os.environ.get("SWITCHYARD_SCREENSHOTS"):
        shutil.copy(shot, Path(folder) / shot.name)
    page.close()
    landed = rows(home, "preferences", "consents", len(said) + 2)
    changed = {
        (c["channel"], c["topic"], c["status"])
        for c in landed
        if c["source"] == "preference_center"
        and c["consent_id"] not in {s["consent_id"] for s in said}
    }
    assert changed == {("email", "marketing", "unsubscribed"), ("push", "vip_offers", "subscribed")}
    # a form that names a box the page never showed is refused, nothing landed
    refused = httpx.post(preferences, content=b"email:other=on&save=1", headers=FORM)
    assert refused.status_code == 400 and "unknown field" in refused.text
    # a link checker's HEAD, and a POST that is not the page's form, change nothing
    assert httpx.head(preferences).status_code == 200
    empty = httpx.post(preferences, content=b"", headers=FORM)
    assert empty.status_code == 400 and "save button" in empty.text
    assert len(rows(home, "preferences", "consents", 0)) == len(said) + 2
    # the page's unticking of Ada's email marketing is this email's unsubscribe; the vip tick
    # is not, and there is one feedback line
    (unsubscribed,) = rows(home, "feedback", "events", 1)
    assert (unsubscribed["send_key"], unsubscribed["event"]) == ("k1", "unsubscribe")


def test_saving_a_page_opened_before_an_unsubscribe_does_not_undo_it(
    collector: tuple[LinkSigner, Path],
) -> None:
    signer, home = collector
    at = parse_utc("2026-01-01T00:00:00Z")
    landing.write_batch(home, "preferences", "consents",
                        [events.consent("u-ada", "email", "subscribed", at)])  # fmt: skip
    unsubscribe, preferences = signer.urls(LinkSubject("email", "u-ada", send_key="k1"))
    page = httpx.get(preferences).text
    (shown,) = re.findall(r'name="shown" value="([^"]*)"', page)
    assert "email:marketing" in shown.split(",")
    # then, in the mail app, one click; then the old page is saved with one other box changed
    assert httpx.post(unsubscribe, headers=FORM, **ONE_CLICK).status_code == 200
    kept = [n for n in shown.split(",") if n != "push:cart_reminders"]
    form = [(n, "on") for n in kept] + [("shown", shown), ("save", "1")]
    saved = httpx.post(preferences, data=dict(form))
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=1")
    landed = rows(home, "preferences", "consents", 3)
    changed = {(c["channel"], c["topic"], c["status"], c["source"]) for c in landed[1:]}
    assert changed == {
        ("email", "marketing", "unsubscribed", "one_click_unsubscribe"),
        ("push", "cart_reminders", "unsubscribed", "preference_center"),
    }


def test_the_index_rereads_a_file_that_grew_and_the_secret_is_read_alike(tmp_path: Path) -> None:
    folder = tmp_path / "consents"
    folder.mkdir()
    at = parse_utc("2026-01-01T00:00:00Z")
    written = folder / "team.jsonl"
    first = events.consent("u-1", "sms", "subscribed", at)
    written.write_text(json.dumps(first) + "\n")
    index = ConsentIndex(folder)
    index.refresh()
    assert index.of("u-1") == {("sms", "marketing"): "subscribed"}
    later = events.consent("u-1", "sms", "unsubscribed", parse_utc("2026-01-02T00:00:00Z"))
    with written.open("a") as out:  # copied in place, not renamed: read again
        out.write(json.dumps(later) + "\n")
    index.refresh()
    assert index.of("u-1") == {("sms", "marketing"): "unsubscribed"}
    mounted = {"SWITCHYARD_LINK_SECRET": SECRET + "\n"}  # a secret from a file, with its newline
    assert preference_links.secret_from_env(mounted) == SECRET
