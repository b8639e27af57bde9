"""Each provider's checks and answers, as its API reference describes them.

A handler takes the request and returns a Reply; when it accepts a message it also returns what to
record. Checks are those the provider applies before accepting: auth, required fields, shapes.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from sandbox.credentials import SandboxCredentials

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serializable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    # Twilio message resources created by this request, kept for the Messages list.
    twilio_resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: str = ""


# SendGrid v3 ---------------------------------------------------------------------------------


def _sendgrid_error(status: int, message: str, field_name: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"message": message, "field": field_name, "help": None}]})


def _substitute(text: str | None, substitutions: dict[str, str]) -> str | None:
    """SendGrid's substitution tags: each tag in the subject or content replaced by its value."""
    if text is None or not substitutions:
        return text
    tags = re.compile(
        "|".join(re.escape(tag) for tag in sorted(substitutions, key=len, reverse=True))
    )
    return tags.sub(lambda m: substitutions[m.group(0)], text)


def sendgrid_mail_send(req: Request, creds: SandboxCredentials) -> Reply:
    if req.headers.get("authorization") != f"Bearer {creds.sendgrid_api_key}":
        return _sendgrid_error(
            401, "The provided authorization grant is invalid, expired, or revoked"
        )
    try:
        mail = json.loads(req.body)
    except ValueError:
        return _sendgrid_error(400, "Bad Request", None)
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return _sendgrid_error(
            400,
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if len(personalizations) > 1000:
        return _sendgrid_error(
            400,
            "The personalizations field is limited to 1000 personalizations per request.",
            "personalizations",
        )
    sender = mail.get("from") or {}
    if not EMAIL.match(str(sender.get("email", ""))):
        return _sendgrid_error(
            400,
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    content = mail.get("content")
    if not mail.get("template_id"):
        if not isinstance(content, list) or not content:
            return _sendgrid_error(
                400,
                "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
                "content",
            )
        if any(not c.get("type") or not c.get("value") for c in content):
            return _sendgrid_error(
                400,
                "The content value must be a string at least one character in length.",
                "content.0.value",
            )
    addresses = [
        str(r.get("email", "")).lower()
        for p in personalizations
        if isinstance(p, dict)
        for r in (p.get("to") or []) + (p.get("cc") or []) + (p.get("bcc") or [])
        if isinstance(r, dict)
    ]
    if len(addresses) != len(set(addresses)):
        return _sendgrid_error(
            400,
            # twilio.com/docs/sendgrid/api-reference/mail-send/errors
            f"Each unique email address in the personalizations array should only be included once. You have included {next(a for a in addresses if addresses.count(a) > 1)} more than once.",
            "personalizations",
        )
    accepted = []
    message_id = uuid.uuid4().hex[:22]
    for i, p in enumerate(personalizations):
        to = p.get("to")
        if not isinstance(to, list) or not to:
            return _sendgrid_error(
                400,
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                f"personalizations.{i}.to",
            )
        subject = p.get("subject") or mail.get("subject")
        if not subject and not mail.get("template_id"):
            return _sendgrid_error(
                400,
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
                "subject",
            )
        headers = {
            k.lower(): v
            for k, v in {**(mail.get("headers") or {}), **(p.get("headers") or {})}.items()
        }
        # RFC 8058: a one-click POST needs a List-Unsubscribe URI to POST to
        if "list-unsubscribe-post" in headers and not re.search(
            r"<https?://[^>]+>", str(headers.get("list-unsubscribe", ""))
        ):
            return _sendgrid_error(
                400, "List-Unsubscribe-Post needs a List-Unsubscribe header with an http(s) URI.",
                f"personalizations.{i}.headers",
            )  # fmt: skip
        substitutions = p.get("substitutions") or {}
        if not isinstance(substitutions, dict) or any(
            not isinstance(v, str) for v in substitutions.values()
        ):
            return _sendgrid_error(
                400, "Substitutions must be an object of strings.",
                f"personalizations.{i}.substitutions",
            )  # fmt: skip
        if sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items()) > 10_000:
            return _sendgrid_error(
                400,
                "The total size of your substitutions cannot exceed 10,000 bytes per personalization object.",
                f"personalizations.{i}.substitutions",
            )
        body = _substitute((content or [{}])[0].get("value"), substitutions)
        subject = _substitute(subject, substitutions)
        for recipient in to:
            if not EMAIL.match(str(recipient.get("email", ""))):
                return _sendgrid_error(
                    400, "Does not contain a valid address.", f"personalizations.{i}.to.0.email"
                )
            args = {**(mail.get("custom_args") or {}), **(p.get("custom_args") or {})}
            accepted.append(
                {
                    "provider": "sendgrid",
                    "channel": "email",
                    "recipient": recipient["email"],
                    "subject": subject,
                    "body": body,
                    "send_key": args.get("send_key"),
                    "provider_message_id": message_id,
                    "list_unsubscribe": headers.get("list-unsubscribe"),
                }
            )
    return Reply(202, None, {"X-Message-Id": message_id}, accepted)


# Twilio Messages ------------------------------------------------------------------------------


def _twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def _twilio_unauthorized(req: Request, creds: SandboxCredentials, account_sid: str) -> bool:
    expected = base64.b64encode(
        f"{creds.twilio_account_sid}:{creds.twilio_auth_token}".encode()
    ).decode()
    return (
        req.headers.get("authorization") != f"Basic {expected}"
        or account_sid != creds.twilio_account_sid
    )


def _rfc2822(at: datetime) -> str:
    return email.utils.format_datetime(at.astimezone(UTC))


def twilio_messages(
    req: Request, creds: SandboxCredentials, account_sid: str, now: datetime
) -> Reply:
    if _twilio_unauthorized(req, creds, account_sid):
        return _twilio_error(401, 20003, "Authenticate")
    if not req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _twilio_error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
    form = {k: v[0] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()}
    to = form.get("To")
    if not to:
        return _twilio_error(400, 21604, "A 'To' phone number is required.")
    if not E164.match(to):
        return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return _twilio_error(400, 21603, "A 'From' phone number is required.")
    if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
        return _twilio_error(400, 21602, "Message body is required.")
    if len(form.get("Body", "")) > 1600:
        return _twilio_error(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    callback = form.get("StatusCallback")
    if callback is not None and not re.match(r"^https?://[^/_\s]+(/\S*)?$", callback):
        return _twilio_error(400, 21609, f"Invalid StatusCallback URL: {callback}")
    resource = twilio_resource(
        account_sid,
        now,
        to=to,
        body=form.get("Body", ""),
        from_number=form.get("From"),
        messaging_service_sid=form.get("MessagingServiceSid"),
    )
    sid = resource["sid"]
    # What Twilio gives back to us about a send: the send key only through the StatusCallback URL.
    callback_args = parse_qs(callback.split("?", 1)[1]) if callback and "?" in callback else {}
    record = {
        "provider": "twilio",
        "channel": "sms",
        "recipient": to,
        "subject": None,
        "body": form.get("Body"),
        "send_key": next(iter(callback_args.get("send_key", [])), None),
        "provider_message_id": sid,
    }
    return Reply(201, resource, {}, [record], [resource])


def twilio_resource(
    account_sid: str,
    now: datetime,
    *,
    to: str,
    body: str,
    from_number: str | None,
    messaging_service_sid: str | None = None,
) -> dict[str, Any]:
    """An outbound Message resource as Twilio's spec describes it, as it stands when created."""
    sid = "SM" + uuid.uuid4().hex
    created = _rfc2822(now)
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": created,
        "date_sent": None,
        "date_updated": created,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": from_number,
        "messaging_service_sid": messaging_service_sid,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "to": to,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def twilio_as_of(resource: dict[str, Any], now: datetime, send_after: float) -> dict[str, Any]:
    """A message as Twilio lists it later: queued (no date_sent) until it is handed on."""
    created = email.utils.parsedate_to_datetime(resource["date_created"])
    if (now - created).total_seconds() < send_after:
        return resource
    sent = _rfc2822(created + timedelta(seconds=send_after))
    return {**resource, "status": "sent", "date_sent": sent, "date_updated": sent}


def _sent_on(resource: dict[str, Any]) -> date | None:
    sent = resource.get("date_sent")
    return email.utils.parsedate_to_datetime(sent).astimezone(UTC).date() if sent else None


def _date_filter(name: str, value: str) -> tuple[str, date] | str:
    """Twilio's DateSent filters: `DateSent=YYYY-MM-DD`, `DateSent<=...`, `DateSent>=...`."""
    op = {"DateSent": "=", "DateSent<": "<=", "DateSent>": ">="}[name]
    try:
        return op, date.fromisoformat(value.lstrip("="))
    except ValueError:
        return f"Invalid value for {name}: {value} (expected YYYY-MM-DD)"


def twilio_messages_list(
    req: Request, creds: SandboxCredentials, account_sid: str, store: list[dict[str, Any]]
) -> Reply:
    """`GET .../Messages.json` with To, From, DateSent(<,>) filters, by DateSent, paged."""
    if _twilio_unauthorized(req, creds, account_sid):
        return _twilio_error(401, 20003, "Authenticate")
    query = {k: v[0] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
    try:
        page_size = int(query.get("PageSize", "50"))
        page = int(query.get("Page", "0"))
    except ValueError:
        return _twilio_error(400, 20001, "PageSize and Page must be integers")
    if not 1 <= page_size <= 1000 or page < 0:
        return _twilio_error(400, 20001, "PageSize must be between 1 and 1000")
    filters = []
    for name in ("DateSent", "DateSent<", "DateSent>"):
        if name in query:
            parsed = _date_filter(name, query[name])
            if isinstance(parsed, str):
                return _twilio_error(400, 20001, parsed)
            filters.append(parsed)

    def matches(m: dict[str, Any]) -> bool:
        if m["account_sid"] != account_sid:
            return False
        if "To" in query and m["to"] != query["To"]:
            return False
        if "From" in query and m["from"] != query["From"]:
            return False
        sent_on = _sent_on(m)
        for op, day in filters:
            if sent_on is None:
                return False  # not sent yet: no DateSent to match
            if (op == "=" and sent_on != day) or (op == "<=" and sent_on > day):
                return False
            if op == ">=" and sent_on < day:
                return False
        return True

    # Twilio sorts the list by DateSent, most recent first. Where messages not sent yet (no
    # date_sent) fall is not documented: here they come last, the harder case for a lookup.
    sent = [m for m in reversed(store) if m["date_sent"]]
    by_date_sent = sorted(
        sent, key=lambda m: email.utils.parsedate_to_datetime(m["date_sent"]), reverse=True
    )
    queued = [m for m in reversed(store) if not m["date_sent"]]
    found = [m for m in [*by_date_sent, *queued] if matches(m)]
    chunk = found[page * page_size : (page + 1) * page_size]
    base = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
    kept = {k: v for k, v in query.items() if k not in ("Page", "PageToken", "PageSize")}

    def uri(n: int) -> str:
        extra = {"PageToken": f"PA{n}"} if n > 0 else {}
        return f"{base}?{urlencode({**kept, 'PageSize': page_size, 'Page': n, **extra})}"

    more = (page + 1) * page_size < len(found)
    body = {
        "messages": chunk,
        "start": page * page_size,
        "end": page * page_size + max(len(chunk) - 1, 0),
        "page": page,
        "page_size": page_size,
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if more else None,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "uri": uri(page),
    }
    return Reply(200, body)


# FCM HTTP v1 ----------------------------------------------------------------------------------


def _google_error(status: int, state: str, message: str, fcm_code: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if (
        fcm_code
    ):  # FCM's own code, in the details (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode)
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]
    return Reply(status, {"error": error})


def fcm_send(
    req: Request, creds: SandboxCredentials, project_id: str, token_ok: Callable[[str], bool]
) -> Reply:
    """`token_ok`: whether a bearer token is a current access token (minted, or the fixed one)."""
    bearer = req.headers.get("authorization", "")
    if not bearer.startswith("Bearer ") or not token_ok(bearer.removeprefix("Bearer ")):
        return _google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    if project_id != creds.fcm_project_id:
        return _google_error(
            403, "PERMISSION_DENIED", f"Permission denied on project {project_id}."
        )
    try:
        message = json.loads(req.body)["message"]
    except (ValueError, KeyError, TypeError):
        return _google_error(
            400,
            "INVALID_ARGUMENT",
            'Invalid JSON payload received. Unknown name or missing "message".',
        )
    targets = [k for k in ("token", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        return _google_error(
            400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition must be set."
        )
    data = message.get("data") or {}
    if any(not isinstance(v, str) for v in data.values()):
        return _google_error(
            400, "INVALID_ARGUMENT", "Invalid value at 'message.data': values must be strings."
        )
    token = str(message.get("token", ""))
    if token.startswith("unregistered"):  # an app uninstalled, a token expired
        return _google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
    if token.startswith("invalid"):
        return _google_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
        )
    name = f"projects/{project_id}/messages/{uuid.uuid4().int % 10**19}"
    note = message.get("notification") or {}
    record = {
        "provider": "fcm",
        "channel": "push",
        "recipient": message.get("token"),
        "subject": note.get("title"),
        "body": note.get("body"),
        "send_key": data.get("send_key"),
        "provider_message_id": name,
    }
    return Reply(200, {"name": name}, {}, [record])


# Webhooks (Standard Webhooks) -------------------------------------------------------------------

WEBHOOK_TOLERANCE_SECONDS = 300  # the spec's suggested window against replays


def webhook_receive(req: Request, creds: SandboxCredentials, now: datetime) -> Reply:
    """A receiver as the Standard Webhooks spec describes one: the three headers, a timestamp
    within five minutes, a v1 signature over `{id}.{timestamp}.{body}` (constant-time compare)."""
    msg_id = req.headers.get("webhook-id")
    stamp = req.headers.get("webhook-timestamp")
    signatures = req.headers.get("webhook-signature", "").split()
    if not (msg_id and stamp and signatures):
        return Reply(
            400, {"error": "webhook-id, webhook-timestamp and webhook-signature are required"}
        )
    try:
        sent_at = int(stamp)
    except ValueError:
        return Reply(400, {"error": f"webhook-timestamp is not an integer: {stamp!r}"})
    if abs(now.timestamp() - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        return Reply(400, {"error": "webhook-timestamp is too far from now"})
    key = base64.b64decode(creds.webhook_secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + req.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        return Reply(401, {"error": "no webhook-signature matches"})
    try:
        event = json.loads(req.body)
        data = event["data"]
    except (ValueError, KeyError, TypeError):
        return Reply(400, {"error": "the body is not a JSON event with `data`"})
    accepted = {
        "provider": "webhook",
        "channel": "webhook",
        "recipient": data.get("recipient"),
        "subject": data.get("subject"),
        "body": data.get("body"),
        "send_key": data.get("send_key"),
        "provider_message_id": msg_id,
    }
    return Reply(204, accepted=[accepted])
