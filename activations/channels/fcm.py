"""Push over Firebase Cloud Messaging HTTP v1 `POST /v1/projects/{project}/messages:send`.

Authorised by an OAuth 2.0 access token: minted from a service-account key (google_auth.py) or,
for a token managed elsewhere, given as is. A token FCM says is dead (UNREGISTERED, or not a valid
registration token) fails the send as `dead_push_token`; dbt keeps such tokens out of dim_people,
so they are not used again.
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import httpx

from activations.channels.core import Retryable
from activations.channels.google_auth import ServiceAccountTokens
from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason

DEAD_PUSH_TOKEN = "dead_push_token"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def fcm_error_code(response: httpx.Response) -> str | None:
    """FCM's own error code (UNREGISTERED, INVALID_ARGUMENT, ...) from the error's details."""
    try:
        details = response.json()["error"].get("details") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR:
            code = detail.get("errorCode")
            return str(code) if code else None
    return None


def is_dead_token(response: httpx.Response) -> bool:
    code = fcm_error_code(response)
    if code == "UNREGISTERED":
        return True
    # INVALID_ARGUMENT also covers bad payloads: only the token's own complaint marks it dead.
    return code == "INVALID_ARGUMENT" and "registration token" in failure_reason(response)


@dataclass(frozen=True)
class FcmClient:
    base_url: str
    project_id: str
    access_token: str | None = None  # a token managed elsewhere
    tokens: ServiceAccountTokens | None = field(default=None, compare=False)
    channel: str = "push"
    idempotent: bool = False

    def __post_init__(self) -> None:
        if (self.access_token is None) == (self.tokens is None):
            raise ValueError("FcmClient takes an access token or a service account, one of them")

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        token = self.tokens.token(http) if self.tokens else self.access_token
        payload = {
            "message": {
                "token": message.recipient,
                "notification": {"title": message.title or "", "body": message.body},
                "data": {"send_key": message.send_key, **message.tags},
            }
        }
        return http.build_request(
            "POST", self._send_url, json=payload, headers={"Authorization": f"Bearer {token}"}
        )

    @cached_property  # once per client: parsing the URL cost more than the request's body
    def _send_url(self) -> httpx.URL:
        return httpx.URL(f"{self.base_url.rstrip('/')}/v1/projects/{self.project_id}/messages:send")

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code == 200:
            return Outcome("sent", 200, response.json().get("name"))
        if response.status_code == 401 and self.tokens is not None:
            # UNAUTHENTICATED: refused before any work. A token revoked or expired early: mint
            # another and send again.
            used = response.request.headers.get("authorization", "").removeprefix("Bearer ")
            self.tokens.forget(used)
            raise Retryable(failure_reason(response))
        if is_dead_token(response):
            return Outcome(
                "failed",
                response.status_code,
                reason=DEAD_PUSH_TOKEN,
                detail=failure_reason(response),
            )
        return Outcome("failed", response.status_code, reason=failure_reason(response))
