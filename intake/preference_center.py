"""The pages behind a message's signed links (switchyard/preference_links.py), served by the
collector:

- `POST /unsubscribe/{token}` with `List-Unsubscribe=One-Click`: RFC 8058's one-click
  unsubscribe, as a mailbox provider sends it. `GET` only shows a page with the button: mail
  scanners open links, and a GET must never unsubscribe anyone (RFC 8058 section 1).
- `GET /preferences/{token}`: the person's channels and topics, as the send-time guard reads them;
  `POST` lands what they changed (and only that), then shows the page again.

Every choice lands in `preferences/consents` (by user id), or, for a person known only by the
address, in `preferences/suppressions`; an unsubscribe from a message also lands a feedback
`unsubscribe` event for that send key. Answers are 2xx only once those rows are durable.
"""

from __future__ import annotations

import asyncio
import email.policy
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from intake.consent_index import Choice, ConsentIndex
from switchyard import events, preference_links
from switchyard.events import MARKETING
from switchyard.preference_links import LinkSubject

PAGE_CHANNELS = {"email": "Email", "sms": "Text messages", "push": "Push notifications"}
MAX_FORM_BYTES = 16 * 1024
SHOWN_FIELD = "shown"  # the boxes ticked when the page was drawn: what a save is a change from
NOT_SAVED = "Not saved, or not all of it: please try again."
ONE_CLICK = ("List-Unsubscribe", "One-Click")
# The link is the credential: never cached, never sent on as a Referer, never framed.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
Append = Callable[[str, list[dict[str, Any]]], Awaitable[None]]  # (landing table, rows)


@dataclass(frozen=True)
class Topic:
    """A subscription topic journeys declare (`meta.journey.topic`)."""

    name: str
    opt_in: bool = False  # only people who subscribed get it: unticked until they do

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").replace("-", " ").capitalize()


class FormError(ValueError):
    """The form or request is not one these pages send: 400, with the reason."""


def form_fields(content_type: str, raw: bytes) -> list[tuple[str, str]]:
    """The fields of a form body: url-encoded, or multipart/form-data (which RFC 8058 says a
    one-click POST should be)."""
    try:
        if content_type.lower().startswith("multipart/form-data"):
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            mail = BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
            if not mail.is_multipart():
                raise FormError("the multipart form has no parts")
            fields = []
            for part in mail.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = part.get_payload(decode=True) or b""
                if isinstance(name, str) and isinstance(value, bytes):
                    fields.append((name, value.decode("utf-8")))
            return fields
        return urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError, TypeError) as bad:
        raise FormError("the form is not url-encoded or multipart text") from bad


def choices_shown(topics: Sequence[Topic]) -> list[Choice]:
    return [(ch, t) for t in [MARKETING, *(t.name for t in topics)] for ch in PAGE_CHANNELS]


def ticked(status: str | None, topic: Topic | None) -> bool:
    """What the guard would do: marketing needs an explicit subscription; a topic only an
    opt-out, unless it is opt-in."""
    if topic is None:
        return status == "subscribed"
    return status == "subscribed" or (status is None and not topic.opt_in)


def changes(
    current: dict[Choice, str], topics: Sequence[Topic], form: Iterable[tuple[str, str]]
) -> list[tuple[Choice, str]]:
    """The (choice, new status) of every box the person changed: against the state the page
    showed them (its `shown` field), so that saving a page opened before a later change (an
    unsubscribe from the mail app) does not undo that change; `current` without it."""
    shown = choices_shown(topics)
    names = {f"{ch}:{t}": (ch, t) for ch, t in shown}
    wanted: set[Choice] = set()
    baseline: set[Choice] | None = None
    for name, value in form:
        if name in names:
            wanted.add(names[name])
        elif name == SHOWN_FIELD:
            baseline = {names[n] for n in value.split(",") if n in names}
        elif name != "save":
            raise FormError(f"unknown field {name[:60]!r}: the form names channel:topic boxes")
    by_name = {t.name: t for t in topics}
    out = []
    for choice in shown:
        if baseline is not None:
            was = choice in baseline
        else:
            was = ticked(current.get(choice), by_name.get(choice[1]))
        if (choice in wanted) != was:
            out.append((choice, "subscribed" if choice in wanted else "unsubscribed"))
    return out


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem;
        color: #1d2330; }
 h1 { font-size: 1.5rem; } table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
 th, td { padding: .5rem; border-bottom: 1px solid #dde1e8; text-align: center; }
 th:first-child, td:first-child { text-align: left; }
 .note { background: #e9f7ef; border: 1px solid #7fc79b; padding: .5rem 1rem; }
 .error { background: #fdecea; border: 1px solid #e57368; padding: .5rem 1rem; }
 button { font: inherit; padding: .5rem 1.25rem; margin-right: .5rem; }
 .muted { color: #5b6474; font-size: .9rem; }
</style></head><body>
<h1>{{ title }}</h1>
{% if note %}<p class="note" role="status">{{ note }}</p>{% endif %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if rows %}
<form method="post" action="{{ action }}">
<table><thead><tr><th scope="col">What we send</th>
{% for ch in channels %}<th scope="col">{{ ch[1] }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr><th scope="row">{{ row.label }}</th>
{% for box in row.boxes %}<td><input type="checkbox" name="{{ box.name }}" id="{{ box.name }}"
 aria-label="{{ row.label }}: {{ box.channel }}"{% if box.ticked %} checked{% endif %}></td>
{% endfor %}</tr>
{% endfor %}</tbody></table>
<p class="muted">A topic reaches you on a channel only while that channel's "All marketing" is on.
Receipts and other messages you asked for still arrive. An address that bounced, reported spam or
replied STOP stays blocked whatever is ticked here (reply START to a text to lift a STOP).</p>
<input type="hidden" name="shown" value="{{ shown }}">
<button type="submit" name="save" value="1">Save my choices</button>
</form>
{% endif %}
{% if unsubscribe_action %}
<form method="post" action="{{ unsubscribe_action }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{ unsubscribe_label }}</button>
</form>
{% endif %}
{% if preferences_link %}<p><a href="{{ preferences_link }}">Choose what you get instead</a></p>
{% endif %}
</body></html>
"""
)


def page(status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("channels", list(PAGE_CHANNELS.items()))
    return HTMLResponse(_PAGE.render(**values), status_code=status, headers=HEADERS)


def routes(
    secret: str, topics: Sequence[Topic], index: ConsentIndex, append: Append
) -> list[Route]:
    """The pages, answering from `index` and landing through `append`. The index loads in a
    thread of its own, from now on: never in the pool the landing writes go through, and one
    load at a time however many pages are asked for."""
    by_name = {t.name: t for t in topics}
    loader = ThreadPoolExecutor(1, thread_name_prefix="consent-index")
    loader.submit(index.refresh)  # the first page need not wait for the whole read

    async def refreshed() -> None:
        await asyncio.get_running_loop().run_in_executor(loader, index.refresh)

    def linked(
        handler: Callable[[Request, str, LinkSubject], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """The handler, given the link's token and its checked subject; a bad link: 400."""

        async def handle(request: Request) -> Response:
            token = request.path_params["token"]
            try:
                subject = preference_links.read(secret, token)
            except preference_links.TokenError as bad:
                return invalid(str(bad).capitalize())
            return await handler(request, token, subject)

        return handle

    def invalid(reason: str) -> HTMLResponse:
        return page(
            400,
            title="This link does not work",
            error=f"{reason}. Use the link in the most recent message we sent you.",
        )

    async def form_of(request: Request) -> list[tuple[str, str]]:
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_FORM_BYTES:
                raise FormError("the form is too large")
        return form_fields(request.headers.get("content-type", ""), bytes(raw))

    async def land_choices(
        subject: LinkSubject, picked: list[tuple[Choice, str]], source: str
    ) -> None:
        at = datetime.now(UTC)
        assert subject.user_id is not None
        rows = [
            events.consent(subject.user_id, ch, status, at, topic=topic, source=source)
            for (ch, topic), status in picked
        ]
        # the message's own unsubscribe: its channel's marketing or its topic there, once
        own = {(subject.channel, subject.topic), (subject.channel, MARKETING)}
        feedback = [
            _unsubscribe_event(subject, row["consent_id"], at)
            for row in rows
            if row["status"] == "unsubscribed"
            and (row["channel"], row["topic"]) in own
            and subject.send_key
        ][:1]
        if rows:
            await append("consents", rows)
        if feedback:
            await append("feedback", feedback)
        for row in rows:
            index.fold(row)  # shown at once, before its file closes

    def preferences_page(subject: LinkSubject, token: str, note: str | None) -> HTMLResponse:
        if subject.user_id is None:
            return page(
                title="Your email preferences",
                note=note,
                error=None,
                rows=[],
                unsubscribe_action=f"../unsubscribe/{token}",
                unsubscribe_label="Unsubscribe this address from marketing",
            )
        current = index.of(subject.user_id)
        rows: list[dict[str, Any]] = []
        ticked_names: list[str] = []
        for topic_name in [MARKETING, *by_name]:
            topic = by_name.get(topic_name)
            label = "All marketing" if topic is None else topic.label
            boxes = [
                {
                    "name": f"{ch}:{topic_name}",
                    "channel": ch_label,
                    "ticked": ticked(current.get((ch, topic_name)), topic),
                }
                for ch, ch_label in PAGE_CHANNELS.items()
            ]
            rows.append({"label": label, "boxes": boxes})
            ticked_names += [str(b["name"]) for b in boxes if b["ticked"]]
        shown = ",".join(ticked_names)
        return page(
            title="Your subscriptions",
            note=note,
            rows=rows,
            shown=shown,
            action=token,
            unsubscribe_action=None,
        )

    async def preferences(request: Request, token: str, subject: LinkSubject) -> Response:
        if request.method in ("GET", "HEAD"):  # a link checker's HEAD changes nothing either
            if subject.user_id:
                await refreshed()
            saved = request.query_params.get("saved")
            note = f"Saved: {saved} change(s)." if saved and saved.isdigit() else None
            return preferences_page(subject, token, note)
        if subject.user_id is None:
            return invalid("This link can only unsubscribe its address")
        try:
            await refreshed()
            form = await form_of(request)
            if not any(name == "save" for name, _ in form):
                raise FormError("the form must come from the page (its save button)")
            picked = changes(index.of(subject.user_id), topics, form)
        except FormError as bad:
            return page(400, title="That did not work", error=f"{bad}.")
        try:
            await land_choices(subject, picked, "preference_center")
        except (OSError, RuntimeError):
            return page(503, title="Not saved", error=NOT_SAVED)
        # Post/redirect/get: reloading the page does not send the form again.
        return RedirectResponse(f"{token}?saved={len(picked)}", status_code=303, headers=HEADERS)

    async def unsubscribe(request: Request, token: str, subject: LinkSubject) -> Response:
        what = _described(subject, by_name)
        preferences_link = f"../preferences/{token}" if subject.user_id else None
        if request.method in ("GET", "HEAD"):
            return page(
                title=f"Unsubscribe from {what}?",
                unsubscribe_action=token,
                unsubscribe_label="Unsubscribe",
                preferences_link=preferences_link,
            )
        try:
            if ONE_CLICK not in await form_of(request):
                raise FormError("a one-click unsubscribe posts List-Unsubscribe=One-Click")
        except FormError as bad:
            return page(400, title="That did not work", error=f"{bad}.")
        try:
            if subject.user_id:
                choice = (subject.channel, subject.topic)
                await land_choices(subject, [(choice, "unsubscribed")], "one_click_unsubscribe")
            else:
                await _land_address_unsubscribe(subject, append)
        except (OSError, RuntimeError):
            return page(503, title="Not saved", error=NOT_SAVED)
        return page(
            title="You are unsubscribed",
            note=f"You will no longer get {what}.",
            preferences_link=preferences_link,
        )

    return [
        Route("/preferences/{token}", linked(preferences), methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", linked(unsubscribe), methods=["GET", "POST"]),
    ]


def _described(subject: LinkSubject, topics: dict[str, Topic]) -> str:
    channel = PAGE_CHANNELS.get(subject.channel, subject.channel).lower()
    if subject.topic == MARKETING or subject.user_id is None:  # by address: all its marketing
        return f"marketing {channel}"
    topic = topics.get(subject.topic)
    return f"{(topic.label if topic else subject.topic).lower()} by {channel}"


async def _land_address_unsubscribe(subject: LinkSubject, append: Append) -> None:
    """A person known only by the address: the address is suppressed for marketing."""
    assert subject.address is not None
    at = datetime.now(UTC)
    row_id = uuid.uuid4().hex
    await append(
        "suppressions",
        [events.suppression(f"link:{row_id}", subject.channel, subject.address, "suppressed",
                         "marketing", "unsubscribe link", "unsubscribe_link", at)],
    )  # fmt: skip
    if subject.send_key:
        await append("feedback", [_unsubscribe_event(subject, row_id, at)])


def _unsubscribe_event(subject: LinkSubject, row_id: str, at: datetime) -> dict[str, Any]:
    assert subject.send_key is not None
    return events.feedback_event(
        f"link:{row_id}", subject.send_key, "switchyard", subject.channel, "unsubscribe", at
    )
