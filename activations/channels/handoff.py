"""Hand-offs: a journey step's message handed to an engagement platform, which renders it with
the content its editors made and sends it (graph.Handoff). The step's channel still decides
consent, suppression, caps and quiet hours; the send key, the ledger lines before and after the
call and the retries are the built-in channels'.

- Braze: `POST /campaigns/trigger/send` (an API-triggered campaign), the person as a recipient
  by `external_user_id`, the step's properties as the recipient's `trigger_properties`; 201
  `{"dispatch_id", "message": "success"}`. A step that names no campaign goes through
  `POST /messages/send` instead: the step's own template, rendered here, as Braze's `email`
  (app_id, from, subject, body), `sms` (subscription_group_id, body) or `apple_push` and
  `android_push` message object, to the person's `external_user_ids`; the send key rides in the
  message's extras.
- Customer.io: the transactional API, `POST /v1/send/{email|push|sms}` with the App API key
  (Bearer): `transactional_message_id`, `identifiers` {`id`}, `message_data`; 200 `{"delivery_id"}`.
- Iterable: `POST /api/{email|push|sms|inApp}/target`: `campaignId`, `recipientUserId`,
  `dataFields`; 200 `{"code": "Success"}`.
- Airship: `POST /api/push` to the person's named user, the step's own push template rendered
  here (Airship as the push provider); 202 `{"push_ids": [...]}`.

None of these takes an idempotency key, and none can be asked whether it has our message: a lost
answer is an unknown outcome, failed as `outcome_unknown` at the next run and never handed over
again (activations/engine.py): a hand-off goes out at most once. What the platform refused before
any work (a 429, no connection) is retried as on the built-in channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason

BRAZE_TRIGGER_PATH = "/campaigns/trigger/send"
BRAZE_MESSAGES_PATH = "/messages/send"
CUSTOMERIO_SEND_PATH = "/v1/send/{}"
ITERABLE_TARGET_PATH = "/api/{}/target"
ITERABLE_CHANNELS = {"email": "email", "push": "push", "sms": "sms", "in_app": "inApp"}
CUSTOMERIO_CHANNELS = ("email", "push", "sms")
AIRSHIP_PUSH_PATH = "/api/push"
AIRSHIP_ACCEPT = "application/vnd.urbanairship+json; version=3"


def _properties(message: Message) -> dict[str, object]:
    body = json.loads(message.body or "{}")
    return body if isinstance(body, dict) else {}


def _sent(response: httpx.Response, id_field: str | None) -> Outcome:
    if not 200 <= response.status_code < 300:
        return Outcome("failed", response.status_code, reason=failure_reason(response))
    try:
        body = response.json()
    except ValueError:
        body = {}
    found = body.get(id_field) if id_field and isinstance(body, dict) else None
    return Outcome("sent", response.status_code, str(found) if found else None)


@dataclass(frozen=True)
class BrazeHandoffClient:
    base_url: str
    api_key: str
    channel: str = "handoff_braze"  # the route: what the sender's pools and limits are keyed by
    idempotent: bool = False
    attempts_at_request: bool = True  # its `attempted` line just before its request (core.py)
    # /messages/send: the app an email is sent from, its From, the SMS subscription group
    app_id: str = ""
    email_from: str = ""
    sms_subscription_group: str = ""

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        if not message.tags.get("campaign_id"):
            return self._message_request(http, message)
        body = {
            "campaign_id": message.tags["campaign_id"],
            "recipients": [
                {
                    "external_user_id": message.recipient,
                    "trigger_properties": {
                        **_properties(message), "send_key": message.send_key,
                    },
                    "send_to_existing_only": True,
                }
            ],
        }  # fmt: skip
        return http.build_request(
            "POST",
            self.base_url.rstrip("/") + BRAZE_TRIGGER_PATH,
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        return _sent(response, "dispatch_id")

    def _message_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        """The step's own content through /messages/send; an unset app id, From or
        subscription group is sent as empty, and Braze's 400 says which."""
        extra = {"send_key": message.send_key}
        messages: dict[str, object]
        if message.channel == "email":
            messages = {"email": {
                "app_id": self.app_id, "from": self.email_from,
                "subject": message.subject or "", "body": message.body, "extras": extra,
            }}  # fmt: skip
        elif message.channel == "sms":
            messages = {"sms": {
                "subscription_group_id": self.sms_subscription_group, "body": message.body,
            }}  # fmt: skip
        else:
            title = message.title or ""
            messages = {
                "apple_push": {"alert": {"body": message.body, "title": title}, "extra": extra},
                "android_push": {"alert": message.body, "title": title, "extra": extra},
            }
        body = {"external_user_ids": [message.recipient], "messages": messages}
        return http.build_request(
            "POST",
            self.base_url.rstrip("/") + BRAZE_MESSAGES_PATH,
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )


@dataclass(frozen=True)
class CustomerIoHandoffClient:
    base_url: str  # the App API: https://api.customer.io (EU: https://api-eu.customer.io)
    app_api_key: str
    channel: str = "handoff_customerio"
    idempotent: bool = False
    attempts_at_request: bool = True  # its `attempted` line just before its request (core.py)

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        if message.channel not in CUSTOMERIO_CHANNELS:
            raise ValueError(f"Customer.io sends transactional {CUSTOMERIO_CHANNELS} only")
        body = {
            "transactional_message_id": message.tags["campaign_id"],
            "identifiers": {"id": message.recipient},
            "message_data": {**_properties(message), "send_key": message.send_key},
        }
        return http.build_request(
            "POST",
            self.base_url.rstrip("/") + CUSTOMERIO_SEND_PATH.format(message.channel),
            json=body,
            headers={"Authorization": f"Bearer {self.app_api_key}"},
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        return _sent(response, "delivery_id")


@dataclass(frozen=True)
class IterableHandoffClient:
    base_url: str
    api_key: str
    channel: str = "handoff_iterable"
    idempotent: bool = False
    attempts_at_request: bool = True  # its `attempted` line just before its request (core.py)

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        medium = ITERABLE_CHANNELS.get(message.channel)
        if medium is None:
            raise ValueError(f"Iterable targets {sorted(ITERABLE_CHANNELS)} only")
        campaign = message.tags["campaign_id"]
        body = {
            "campaignId": int(campaign) if campaign.isdigit() else campaign,
            "recipientUserId": message.recipient,
            "dataFields": {**_properties(message), "send_key": message.send_key},
        }
        return http.build_request(
            "POST",
            self.base_url.rstrip("/") + ITERABLE_TARGET_PATH.format(medium),
            json=body,
            headers={"Api-Key": self.api_key},
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        return _sent(response, None)


@dataclass(frozen=True)
class AirshipPushClient:
    base_url: str  # https://go.urbanairship.com (EU: https://go.airship.eu)
    token: str
    channel: str = "handoff_airship"
    idempotent: bool = False
    attempts_at_request: bool = True  # its `attempted` line just before its request (core.py)

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        # what the app receives with the notification; a title is a platform override's field
        override: dict[str, object] = {"extra": {"send_key": message.send_key}}
        if message.title:
            override["title"] = message.title
        notification = {"alert": message.body, "android": override, "ios": override}
        body = {
            "audience": {"named_user": message.recipient},
            "notification": notification,
            "device_types": "all",
        }
        return http.build_request(
            "POST",
            self.base_url.rstrip("/") + AIRSHIP_PUSH_PATH,
            json=body,
            headers={"Authorization": f"Bearer {self.token}", "Accept": AIRSHIP_ACCEPT},
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        outcome = _sent(response, None)
        if outcome.status == "sent":
            ids = response.json().get("push_ids") or []
            return Outcome("sent", response.status_code, str(ids[0]) if ids else None)
        return outcome
