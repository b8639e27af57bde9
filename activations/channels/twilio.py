"""SMS over Twilio `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form, HTTP Basic).

Twilio's Messages create takes no idempotency key (in its published OpenAPI description only the
Payments and UserDefinedMessages endpoints take `IdempotencyKey`; `I-Twilio-Idempotency-Token` is a
header Twilio puts on the webhooks it sends to you). So a lost response is settled by listing the
account's messages to the recipient (`GET .../Messages.json?To=...`, see `find_sent`), never by
sending again blindly.
"""

from __future__ import annotations

import base64
import email.utils
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx

from activations.channels.core import LookupFailed
from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason

# Our clock and Twilio's disagree a little: a message created this long before our `attempted`
# line can still be ours.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class TwilioClient:
    base_url: str
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # Twilio POSTs delivery status changes here; the send key rides along as a query parameter
    # so the feedback finds its send.
    status_callback_url: str | None = None
    page_size: int = 1000  # messages per page of a lookup (Twilio's maximum)
    max_pages: int = 20
    channel: str = "sms"
    idempotent: bool = False

    def __post_init__(self) -> None:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("Twilio needs a From number or a MessagingServiceSid to send from")

    # Built once per client, not per message (parsing the URL cost more than the request's body).
    @cached_property
    def _messages_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    @cached_property
    def _messages_endpoint(self) -> httpx.URL:
        return httpx.URL(self._messages_url)

    @cached_property
    def _auth_headers(self) -> dict[str, str]:
        # HTTP Basic with AccountSid:AuthToken, per the spec's accountSid_authToken scheme.
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return {"Authorization": f"Basic {credentials}"}

    @cached_property  # parsed once: merging the parameter per message cost more than the rest
    def _status_callback_parts(self) -> tuple[str, str]:
        """What goes before the send key and after it: a fragment (Twilio's connection
        overrides, #rc=...) stays last."""
        url = httpx.URL(self.status_callback_url or "").copy_remove_param("send_key")
        fragment = f"#{url.fragment}" if url.fragment else ""
        url = url.copy_with(fragment=None)
        return f"{url}{'&' if url.query else '?'}send_key=", fragment

    def status_callback(self, send_key: str) -> str | None:
        if not self.status_callback_url:
            return None
        before, after = self._status_callback_parts
        return before + quote(send_key, safe="") + after

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        form = {"To": message.recipient, "Body": message.body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number or ""
        callback = self.status_callback(message.send_key)
        if callback:
            form["StatusCallback"] = callback
        return http.build_request(
            "POST", self._messages_endpoint, data=form, headers=self._auth_headers
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code in (200, 201):
            body = response.json()
            return Outcome("sent", response.status_code, body.get("sid"))
        return Outcome("failed", response.status_code, reason=failure_reason(response))

    def find_sent(
        self, http: httpx.Client, message: Message, since: datetime, exclude: Collection[str]
    ) -> str | None:
        """Our outbound message to `message.recipient` with this body, created since `since`.

        Filtered by To (and From) only, not DateSent: a message Twilio accepted but has not
        handed on yet is `queued` with no `date_sent`, and it is exactly the one a lost response
        leaves behind. Twilio orders the list by DateSent, not by creation, and where queued
        messages fall in it is not documented, so every page is read (up to `max_pages`; past
        that the lookup fails rather than guess).
        """
        earliest = since - CLOCK_SKEW
        params: dict[str, str] | None = {"To": message.recipient, "PageSize": str(self.page_size)}
        if params is not None and self.from_number and not self.messaging_service_sid:
            params["From"] = self.from_number
        url: str | None = self._messages_url
        for _ in range(self.max_pages):
            if url is None:
                return None
            response = http.get(url, params=params, headers=self._auth_headers)
            if response.status_code != 200:
                raise LookupFailed(f"Twilio Messages list: {failure_reason(response)}")
            resources, next_uri = _read_page(response)
            for resource in resources:
                if self._is_ours(resource, message, earliest, exclude):
                    return str(resource["sid"])
            # next_page_uri carries every filter already; it is a path on the API's host.
            url = f"{self.base_url.rstrip('/')}{next_uri}" if next_uri else None
            params = None
        if url is None:
            return None
        raise LookupFailed(
            f"Twilio Messages list: more than {self.max_pages * self.page_size} messages to "
            f"{message.recipient}; reconcile this send by hand"
        )

    def _is_ours(
        self,
        resource: dict[str, Any],
        message: Message,
        earliest: datetime,
        exclude: Collection[str],
    ) -> bool:
        # (inbound replies are listed under To=our number, not the recipient's; checked anyway)
        if resource["sid"] in exclude or resource.get("direction") != "outbound-api":
            return False
        if resource.get("to") != message.recipient or resource.get("body") != message.body:
            return False
        sender = resource.get("messaging_service_sid" if self.messaging_service_sid else "from")
        if sender != (self.messaging_service_sid or self.from_number):
            return False
        created = _rfc2822(resource.get("date_created"))
        return created is not None and created >= earliest


def _read_page(response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
    """The page's messages and next page, or LookupFailed when the answer is not that shape."""
    try:
        page = response.json()
        resources = page["messages"]
        next_uri = page.get("next_page_uri")
        if not isinstance(resources, list) or not all(
            isinstance(r, dict) and isinstance(r.get("sid"), str) for r in resources
        ):
            raise TypeError("messages is not a list of Message resources with a sid")
        if next_uri is not None and not isinstance(next_uri, str):
            raise TypeError("next_page_uri is not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LookupFailed(f"Twilio Messages list: unreadable answer ({exc})") from exc
    return resources, next_uri


def _rfc2822(value: object) -> datetime | None:
    """Twilio's `date_created` ('Fri, 24 May 2019 17:44:46 +0000') as naive UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
