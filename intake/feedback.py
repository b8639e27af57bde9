"""Provider feedback: SendGrid's Event Webhook and Twilio's status callbacks and inbound texts,
each request's signature checked, turned into the rows that land in `feedback/events` (what
happened to a send, by its send key) and `preferences/suppressions` (addresses not to send to).

- SendGrid signs `timestamp + body` with ECDSA P-256 / SHA-256; the signature (base64 DER) and
  the timestamp come in X-Twilio-Email-Event-Webhook-Signature / -Timestamp, and the public key
  (base64 DER) is the one shown in SendGrid's Mail Settings (twilio.com/docs/sendgrid/
  for-developers/tracking-events/getting-started-event-webhook-security-features).
- Twilio signs the URL it called followed by every POST parameter, sorted by name, as name and
  value, with HMAC-SHA1 under the account's auth token, base64, in X-Twilio-Signature
  (twilio.com/docs/usage/webhooks/webhooks-security).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from switchyard import events

TIMESTAMP_TOLERANCE = 300  # seconds: an older signed request is a replay
# SendGrid event -> the feedback event staging knows (None: not landed; the ledger has it)
SENDGRID_EVENTS: dict[str, str | None] = {
    "processed": None,
    "deferred": None,
    "delivered": "delivered",
    "open": "open",
    "click": "click",
    "bounce": "bounce",
    "dropped": "dropped",
    "spamreport": "spamreport",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
    "group_resubscribe": None,
}
# What suppresses the address: a hard bounce and a spam report for every message; an
# unsubscribe for marketing only (a receipt still goes). A drop only for the reasons that say
# the address itself is bad or unwilling (others, such as "Invalid SMTPAPI header", are ours).
SUPPRESSING = {"bounce": "all", "spamreport": "all", "unsubscribe": "marketing"}
DROP_REASONS = {
    "bounced address": "all",
    "invalid": "all",
    "spam reporting address": "all",
    "unsubscribed address": "marketing",
}
TWILIO_STATUSES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}
# Opt-out and opt-in keywords, as the whole message in any case: the ones Twilio handles by
# default on long codes (twilio.com/docs/messaging/tutorials/advanced-opt-out).
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}


class Unverified(Exception):
    """The request is not signed by the provider (or too old): refused, nothing landed."""


@dataclass
class Feedback:
    """What one webhook request lands."""

    events: list[dict[str, Any]] = field(default_factory=list)
    suppressions: list[dict[str, Any]] = field(default_factory=list)
    reply: str | None = None  # an inbound text's answer (HELP), if any
    skipped: int = 0  # provider events not landed (processed, deferred; no send key)


def verify_sendgrid(
    public_key: str, body: bytes, headers: Mapping[str, str], now: float | None = None
) -> None:
    signature = headers.get("x-twilio-email-event-webhook-signature")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
    if not signature or not timestamp:
        raise Unverified("missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp")
    _fresh(timestamp, now)
    key = sendgrid_key(public_key)
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise Unverified("the SendGrid signature does not match") from None


def sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The verification key from SendGrid's Mail Settings (base64 DER); ValueError if not one."""
    try:
        key = load_der_public_key(base64.b64decode(public_key))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"SWITCHYARD_SENDGRID_WEBHOOK_PUBLIC_KEY is not a key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("SWITCHYARD_SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve key")
    return key


def twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str] | list[tuple[str, str]]
) -> str:
    """Twilio's signature: every parameter, sorted by name (then value, for a name given more
    than once), as name and value after the URL."""
    pairs = sorted(params.items() if isinstance(params, Mapping) else params)
    signed = url + "".join(f"{k}{v}" for k, v in pairs)
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | list[tuple[str, str]],
    headers: Mapping[str, str],
) -> None:
    given = headers.get("x-twilio-signature")
    if not given:
        raise Unverified("missing X-Twilio-Signature")
    expected = twilio_signature(auth_token, url, params)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        raise Unverified(
            "the Twilio signature does not match (is SWITCHYARD_COLLECTOR_PUBLIC_URL the URL "
            "Twilio calls?)"
        )


def sendgrid_events(payload: Any) -> Feedback:
    """SendGrid's Event Webhook body (a JSON array of events) as landed rows."""
    if not isinstance(payload, list):
        raise ValueError("the SendGrid Event Webhook posts a JSON array of events")
    out = Feedback()
    for event in payload:
        if not isinstance(event, dict):
            raise ValueError("every SendGrid event is a JSON object")
        if event.get("event") == "group_resubscribe" and isinstance(event.get("email"), str):
            at, event_id = _unix(event.get("timestamp")), event.get("sg_event_id")
            if at is not None and event_id:  # back in: the marketing unsubscribe is lifted
                out.suppressions.append(
                    events.suppression(f"sendgrid:{event_id}", "email", event["email"], "lifted",
                                 "marketing", "group_resubscribe", "sendgrid", at)
                )  # fmt: skip
                continue
        kind = SENDGRID_EVENTS.get(str(event.get("event")))
        if kind == "bounce" and event.get("type") == "blocked":
            kind = None  # a block is temporary (the receiving server's policy): not a bounce
        at = _unix(event.get("timestamp"))
        event_id = event.get("sg_event_id")
        if kind is None or at is None or not event_id:
            out.skipped += 1
            continue
        send_key = event.get("send_key")  # our custom_args come back as top-level fields
        if send_key:
            out.events.append(
                events.feedback_event(str(event_id), str(send_key), "sendgrid", "email", kind, at)
            )
        else:
            out.skipped += 1
        scope = SUPPRESSING.get(kind)
        reason = kind
        if kind == "dropped":
            why = str(event.get("reason", "")).strip().lower()
            scope, reason = DROP_REASONS.get(why), f"dropped: {why or 'no reason'}"
        if scope and isinstance(event.get("email"), str):
            out.suppressions.append(
                events.suppression(f"sendgrid:{event_id}", "email", event["email"], "suppressed",
                             scope, reason, "sendgrid", at)
            )  # fmt: skip
    return out


def twilio_status(params: Mapping[str, str], send_key: str | None, now: datetime) -> Feedback:
    """A status callback: delivered, undelivered or failed (others are steps on the way)."""
    out = Feedback()
    kind = TWILIO_STATUSES.get(params.get("MessageStatus", ""))
    sid = params.get("MessageSid") or params.get("SmsSid")
    if kind is None or not sid or not send_key:
        out.skipped += 1
        return out
    out.events.append(
        events.feedback_event(f"twilio:{sid}:{kind}", send_key, "twilio", "sms", kind, now)
    )
    # 21610: the number replied STOP to this sender; Twilio refuses every message until START
    if params.get("ErrorCode") == "21610" and params.get("To"):
        out.suppressions.append(
            events.suppression(f"twilio:{sid}:21610", "sms", params["To"], "suppressed", "all",
                         "STOP (Twilio error 21610)", "twilio", now)
        )  # fmt: skip
    return out


def twilio_inbound(params: Mapping[str, str], now: datetime) -> Feedback:
    """An inbound text: STOP words suppress the number, START words lift it, HELP is answered."""
    out = Feedback()
    word = params.get("Body", "").strip().upper()
    number, sid = params.get("From"), params.get("MessageSid") or params.get("SmsSid")
    if not number or not sid:
        raise ValueError("an inbound message needs From and MessageSid")
    if word in STOP_WORDS:
        out.suppressions.append(
            events.suppression(
                f"twilio:{sid}", "sms", number, "suppressed", "all", word, "twilio", now
            )
        )
    elif word in START_WORDS:
        out.suppressions.append(
            events.suppression(f"twilio:{sid}", "sms", number, "lifted", "all", word, "twilio", now)
        )
    elif word in HELP_WORDS:
        out.reply = "Reply STOP to unsubscribe, START to subscribe again."
    return out


def _fresh(timestamp: str, now: float | None) -> None:
    try:
        signed_at = int(timestamp)
        off = abs((now if now is not None else time.time()) - signed_at)
    except (ValueError, OverflowError):
        raise Unverified("the signature timestamp is not a time") from None
    if off > TIMESTAMP_TOLERANCE:
        raise Unverified("the signature timestamp is more than 5 minutes off: a replay?")


def _unix(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
