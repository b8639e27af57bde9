"""Push over Firebase Cloud Messaging HTTP v1 `POST /v1/projects/{project}/messages:send`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason


@dataclass(frozen=True)
class FcmClient:
    base_url: str
    project_id: str
    access_token: str  # an OAuth2 access token for the service account
    channel: str = "push"
    idempotent: bool = False

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        payload = {
            "message": {
                "token": message.recipient,
                "notification": {"title": message.title or "", "body": message.body},
                "data": {"send_key": message.send_key, **message.tags},
            }
        }
        url = f"{self.base_url.rstrip('/')}/v1/projects/{self.project_id}/messages:send"
        return http.build_request(
            "POST", url, json=payload, headers={"Authorization": f"Bearer {self.access_token}"}
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code == 200:
            return Outcome("sent", 200, response.json().get("name"))
        return Outcome("failed", response.status_code, reason=failure_reason(response))
