"""Deterministic sample data with the mess real data has.

People browse anonymously on one or two devices, some log in (identify) on each, some put things in
a cart, some buy within the hour, later, or never. Most who gave an email opened (and some
clicked) earlier newsletters, mostly at one hour of their day: the email tool's tracked events
(`email_opened`, `email_link_clicked`) from which profiles learn when people engage.
Mixed in: duplicate deliveries of one event, events with no id at all, unparseable timestamps,
missing or badly typed emails, malformed phones, and consent that changes over time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from switchyard import events, landing

FIRST_NAMES = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Guido",
    "Hedy",
    "Tim",
    "Katherine",
    "Niklaus",
    None,
]
TIMEZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
]
PRODUCTS = [
    ("sku-tee", 19.0),
    ("sku-hoodie", 49.0),
    ("sku-mug", 12.5),
    ("sku-cap", 22.0),
    ("sku-socks", 9.0),
    ("sku-jacket", 129.0),
]


@dataclass(frozen=True)
class Summary:
    people: int
    events: int
    orders: int
    consents: int


def generate(
    landing_dir: Path,
    *,
    people: int = 10_000,
    seed: int = 7,
    anchor: datetime | None = None,
    history_hours: int = 72,
) -> Summary:
    """Write raw landing files for `people` people, with activity in the `history_hours` before
    `anchor` (default: now, to the minute)."""
    rng = random.Random(seed)
    # Its own stream: a seed's people, carts and orders stay as they were without it.
    engagement_rng = random.Random(f"{seed}-email-engagement")
    anchor = (anchor or datetime.utcnow()).replace(second=0, microsecond=0)
    start = anchor - timedelta(hours=history_hours)
    counter = iter(range(10**12))

    def mid(prefix: str) -> str:
        return f"{prefix}-{seed}-{next(counter):09d}"

    rows: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []

    for i in range(people):
        user_id = f"u{i:07d}"
        devices = [mid("anon") for _ in range(1 if rng.random() < 0.7 else 2)]
        tz = rng.choice(TIMEZONES)
        name = rng.choice(FIRST_NAMES)
        email = _email(rng, i)
        phone = _phone(rng)
        push_token = mid("fcm") if rng.random() < 0.5 else None
        identifies = rng.random() < 0.85  # the rest stay anonymous: never contactable
        t = start + timedelta(minutes=rng.uniform(0, history_hours * 60 * 0.9))

        for device in devices:
            rows.append(events.page("Home", t, anonymous_id=device, message_id=mid("msg")))
            t += timedelta(minutes=rng.uniform(1, 30))
            if identifies:
                traits = {"email": email, "phone": phone, "first_name": name}
                rows.append(
                    events.identify(
                        t,
                        user_id=user_id,
                        anonymous_id=device,
                        traits=traits,
                        device_id=device,
                        push_token=push_token,
                        timezone_name=tz,
                        message_id=mid("msg"),
                    )
                )
        if identifies:
            for channel, p_in in (("email", 0.7), ("sms", 0.4), ("push", 0.5)):
                if rng.random() < p_in:
                    consents.append(
                        events.consent(
                            user_id,
                            channel,
                            "subscribed",
                            start - timedelta(days=rng.randint(1, 300)),
                            consent_id=mid("cns"),
                        )
                    )
                    if rng.random() < 0.05:  # changed their mind during the window
                        consents.append(
                            events.consent(
                                user_id,
                                channel,
                                "unsubscribed",
                                t + timedelta(minutes=5),
                                consent_id=mid("cns"),
                            )
                        )

        if identifies:
            rows.extend(
                _app_lifecycle(rng, uid=user_id, device=devices[0], t=t, anchor=anchor, mid=mid)
            )
            if email:
                rows.extend(_email_engagement(engagement_rng, uid=user_id, tz=tz, t=start, mid=mid))

        # Shopping: browse, maybe cart, maybe buy (quickly, later, or not at all).
        device = rng.choice(devices)
        uid = user_id if identifies else None
        sku, price = rng.choice(PRODUCTS)
        t += timedelta(minutes=rng.uniform(1, 120))
        rows.append(
            events.track(
                "product_viewed",
                t,
                user_id=uid,
                anonymous_id=device,
                properties={"sku": sku, "price": price},
                message_id=mid("msg"),
            )
        )
        if rng.random() < 0.4:
            qty = rng.randint(1, 3)
            t += timedelta(minutes=rng.uniform(1, 20))
            cart = events.track(
                "cart_updated",
                t,
                user_id=uid,
                anonymous_id=device,
                properties={"sku": sku, "quantity": qty, "cart_value": price * qty},
                message_id=mid("msg"),
            )
            rows.append(cart)
            if rng.random() < 0.03:
                rows.append(dict(cart))  # the SDK retried: same messageId delivered twice
            outcome = rng.random()
            if outcome < 0.55:
                delay = timedelta(
                    minutes=rng.uniform(5, 55) if outcome < 0.35 else rng.uniform(61, 60 * 40)
                )
                bought_at = t + delay
                if bought_at < anchor:
                    order_id = mid("ord")
                    rows.append(
                        events.track(
                            "purchase_completed",
                            bought_at,
                            user_id=uid,
                            anonymous_id=device,
                            properties={"order_id": order_id, "revenue": price * qty},
                            message_id=mid("msg"),
                        )
                    )
                    orders.append(
                        events.order(
                            order_id, bought_at, user_id=uid, email=email, total=price * qty
                        )
                    )
        # Some history: older orders feed order counts and revenue.
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 4])):
            at = start - timedelta(days=rng.randint(1, 400))
            orders.append(
                events.order(mid("ord"), at, user_id=uid, email=email, total=rng.uniform(8, 200))
            )

    rows.extend(_broken_events(rng, anchor, mid, max(3, people // 500)))
    rows = [
        r for r in rows if r["timestamp"] <= events.iso(anchor) or r["timestamp"] == "yesterday"
    ]
    landing.ensure_layout(landing_dir)
    for chunk_start in range(0, len(rows), 50_000):
        landing.write_batch(
            landing_dir,
            "segment",
            "events",
            rows[chunk_start : chunk_start + 50_000],
            prefix="sample",
        )
    landing.write_batch(landing_dir, "shop", "orders", orders, prefix="sample")
    landing.write_batch(landing_dir, "preferences", "consents", consents, prefix="sample")
    return Summary(people=people, events=len(rows), orders=len(orders), consents=len(consents))


def _app_lifecycle(
    rng: random.Random, *, uid: str, device: str, t: datetime, anchor: datetime, mid: Any
) -> list[dict[str, Any]]:
    """Sign-ups (some completing their profile), installs, and app opens and logins: recent for
    most, 30 to 60 days ago for some (the lapsed), long ago for a few."""
    out: list[dict[str, Any]] = []

    def event(name: str, at: datetime, **properties: Any) -> None:
        if at <= anchor:
            out.append(
                events.track(name, at, user_id=uid, anonymous_id=device,
                              properties=properties, message_id=mid("msg"))
            )  # fmt: skip

    if rng.random() < 0.08:  # new this window
        event("signed_up", t + timedelta(minutes=1), method=rng.choice(["email", "apple"]))
        if rng.random() < 0.5:
            event("profile_completed", t + timedelta(hours=rng.uniform(0.2, 60)))
        event("app_opened", t + timedelta(minutes=2))
        return out
    if rng.random() < 0.6:
        event("app_installed", anchor - timedelta(days=rng.uniform(90, 400)))
        roll = rng.random()
        if roll < 0.55:
            last = t
        elif roll < 0.85:
            last = anchor - timedelta(days=rng.uniform(30.5, 59.5))  # lapsed
        else:
            last = anchor - timedelta(days=rng.uniform(61, 85))
        event("app_opened", last - timedelta(minutes=3))
        event("logged_in", last)
    return out


NEWSLETTERS = ["weekly_picks", "new_arrivals", "winter_sale", "back_in_stock"]


def _email_engagement(
    rng: random.Random, *, uid: str, tz: str, t: datetime, mid: Any
) -> list[dict[str, Any]]:
    """Opens (and some clicks) of newsletters in the 60 days before `t`, most at the person's
    own hour of the day, local time: what an email tool sends to the event stream."""
    if rng.random() < 0.35:
        return []  # never opens
    zone = ZoneInfo(tz)
    habit = rng.choice([7, 8, 12, 18, 20, 21])
    out = []
    for _ in range(rng.randint(1, 6)):
        day = (t - timedelta(days=rng.randint(1, 60))).date()
        hour = habit if rng.random() < 0.8 else rng.randint(6, 23)
        local = datetime(day.year, day.month, day.day, hour, rng.randint(0, 59), tzinfo=zone)
        at = local.astimezone(UTC).replace(tzinfo=None)
        campaign = {"campaign_name": rng.choice(NEWSLETTERS), "email_id": mid("eml")}
        opened = events.track(
            "email_opened", at, user_id=uid, properties=campaign, message_id=mid("msg")
        )
        out.append(opened)
        if rng.random() < 0.3:
            clicked_at = at + timedelta(minutes=rng.randint(0, 9))
            out.append(
                events.track(
                    "email_link_clicked",
                    clicked_at,
                    user_id=uid,
                    properties=campaign,
                    message_id=mid("msg"),
                )
            )
    return out


def _email(rng: random.Random, i: int) -> str | None:
    roll = rng.random()
    if roll < 0.08:
        return None  # never gave one
    if roll < 0.12:
        return f"  Person.{i}@Example.COM "  # needs trimming and lower-casing
    if roll < 0.13:
        return f"person{i}-at-example.com"  # not an email
    return f"person.{i}@example.com"


def _phone(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.33:
        return "555-0100"  # no country code: cannot be made E.164
    digits = "".join(str(rng.randint(0, 9)) for _ in range(7))
    if roll < 0.45:
        return f"+1 (415) {digits[:3]}-{digits[3:]}"  # formatted: normalizes to E.164
    return f"+1415{digits}"


def _broken_events(rng: random.Random, anchor: datetime, mid: Any, n: int) -> list[dict[str, Any]]:
    broken: list[dict[str, Any]] = []
    for _ in range(n):
        no_ids = events.track(
            "product_viewed",
            anchor - timedelta(hours=rng.uniform(1, 48)),
            properties={"sku": "sku-tee"},
            message_id=mid("msg"),
        )
        bad_time = events.track(
            "cart_updated", anchor, anonymous_id=mid("anon"), message_id=mid("msg")
        )
        bad_time["timestamp"] = "yesterday"
        broken.extend([no_ids, bad_time])
    return broken
