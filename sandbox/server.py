"""The sandbox HTTP server: routing, recording, injected faults."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sandbox import airship, braze, customerio, google, iterable, providers
from sandbox.credentials import SANDBOX_CREDENTIALS, SandboxCredentials
from sandbox.http import AsyncHttpServer
from sandbox.providers import Reply, Request
from switchyard import preference_links

TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
FCM_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
WEBHOOK_PATH = "/_sandbox/webhook"  # a team's own endpoint, as ChannelSettings.for_sandbox sets it
STATUS_CALLBACK_PATH = "/_sandbox/twilio/status"
CONTENT_PATH = "/_sandbox/content"  # a team's content endpoint, for connected content
UNSUBSCRIBE_PATH = "/_sandbox/unsubscribe"  # where the sandbox's List-Unsubscribe points


@dataclass(frozen=True)
class Received:
    provider: str
    channel: str
    recipient: str
    subject: str | None
    body: str | None
    send_key: str | None
    provider_message_id: str
    received_at: str
    list_unsubscribe: str | None = None  # email: the List-Unsubscribe header it carried


STALL_SECONDS = 60.0  # a stalled provider answers after this long even if never released


@dataclass
class Fault:
    """Answer the next `count` requests to `provider` with `status` (and Retry-After, if set).

    With `lose_response`, the provider processes the request as usual and then the connection
    closes without an answer: the lost response a sender must not retry blindly. With
    `after_processing`, it processes the request and then answers `status` (a 5xx from a provider
    that had already accepted the message). With `delay_seconds` (and no status), it answers as
    usual, that much later: a slow provider.
    """

    provider: str
    status: int = 0
    count: int = 1
    retry_after: float | None = None
    lose_response: bool = False
    after_processing: bool = False
    delay_seconds: float = 0.0


# What fail_at_random draws from, by name.
RANDOM_FAULTS = ("429", "503", "503 after processing", "lost response")


def _random_fault(provider: str, kind: str) -> Fault:
    if kind == "429":
        return Fault(provider, 429, retry_after=0)
    if kind == "503":
        return Fault(provider, 503)
    if kind == "503 after processing":
        return Fault(provider, 503, after_processing=True)
    return Fault(provider, lose_response=True)


class Sandbox:
    """`with Sandbox() as sb:` (ephemeral port), or `Sandbox(port=8025).serve_forever()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: SandboxCredentials = SANDBOX_CREDENTIALS,
        record_file: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        twilio_send_after_seconds: float = 1.0,
        latency_seconds: float = 0.0,
    ) -> None:
        """`clock` (aware, UTC) stamps what the providers stamp; Twilio lists a new message as
        `queued`, without a `date_sent`, for `twilio_send_after_seconds` (as set when the message
        is created; change it to make queue times differ), then as `sent`. `latency_seconds`:
        every provider answer takes that long, as across the internet."""
        self.latency_seconds = latency_seconds
        self.credentials = credentials
        self.clock = clock
        self.twilio_send_after_seconds = twilio_send_after_seconds
        self.record_file = record_file
        self._received: list[Received] = []
        self._faults: list[Fault] = []
        self._random_rate = 0.0  # fail_at_random
        self._random = random.Random(0)
        self._random_providers: tuple[str, ...] = ()
        self._random_kinds: tuple[str, ...] = RANDOM_FAULTS
        self._twilio_messages: list[dict[str, Any]] = []
        self._twilio_send_after: dict[str, float] = {}  # sid -> its queue time, as created
        # every signed webhook delivered, per webhook-id, duplicates included (received keeps
        # the first of each, as a de-duplicating receiver would)
        self.webhook_deliveries: Counter[str] = Counter()
        self._access_tokens: dict[str, float] = {}  # minted at /token -> when it expires
        self.tokens_issued = 0
        self.unsubscribed: list[str] = []  # send keys of one-click unsubscribes received
        self._lock = threading.Lock()
        self._stalled: dict[str, threading.Event] = {}  # provider -> set when released
        self.requests_seen = 0
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it was answering at once
        # The engagement platforms the syncs feed (activations/syncs); set a `window` to change
        # one's rate limit.
        self.braze = braze.BrazeWorkspace(credentials.braze_api_key, credentials.braze_app_id)
        self.customerio = customerio.CustomerIoWorkspace(
            credentials.customerio_site_id,
            credentials.customerio_api_key,
            credentials.customerio_app_api_key,
        )
        self.iterable = iterable.IterableProject(credentials.iterable_api_key)
        self.airship = airship.AirshipProject(credentials.airship_token)
        self._server = AsyncHttpServer(host, port, self.handle)

    @property
    def base_url(self) -> str:
        host, port = self._server.address
        return f"http://{host}:{port}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def stall(self, provider: str) -> None:
        """From now on, requests to `provider` get no answer until `release` (a provider that
        hangs): what a sender does meanwhile on the other channels is what a test looks at."""
        with self._lock:
            self._stalled.setdefault(provider, threading.Event())

    def release(self, provider: str) -> None:
        with self._lock:
            gate = self._stalled.pop(provider, None)
        if gate is not None:
            gate.set()

    def release_all(self) -> None:
        for provider in list(self._stalled):
            self.release(provider)

    def fail_next(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def start(self) -> Sandbox:
        self._server.start()  # its event loop, on a thread of its own
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self.release_all()
        self._server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------

    async def handle(self, req: Request) -> Reply | None:
        """The answer to `req`, or None: close the connection without one."""
        if req.path == google.TOKEN_PATH:  # Google's host, not a provider's: counted apart
            return await self._handle(req)
        with self._lock:
            self.requests_seen += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._handle(req)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _handle(self, req: Request) -> Reply | None:
        if req.method == "GET" and req.path == "/_sandbox/messages":
            return Reply(200, [r.__dict__ for r in self.received])
        if req.method == "GET" and req.path == "/_sandbox/braze/users":
            return Reply(200, self.braze.users)
        if req.method == "POST" and req.path == "/_sandbox/faults":
            self.fail_next(Fault(**json.loads(req.body)))
            return Reply(204)
        if req.method == "POST" and req.path.startswith(f"{UNSUBSCRIBE_PATH}/"):
            # A mailbox provider's one-click unsubscribe (RFC 8058): a POST whose body says so,
            # to a link signed with the sandbox's link secret (the collector's job, played here).
            if b"List-Unsubscribe=One-Click" not in req.body:
                return Reply(400, {"error": "expected the body List-Unsubscribe=One-Click"})
            token = req.path.removeprefix(f"{UNSUBSCRIBE_PATH}/")
            try:
                subject = preference_links.read(self.credentials.link_secret, token)
            except preference_links.TokenError as bad:
                return Reply(400, {"error": f"not a link the sandbox signed: {bad}"})
            with self._lock:
                self.unsubscribed.append(subject.send_key or "")
            return Reply(200, {"unsubscribed": True})
        if req.method == "POST" and req.path == STATUS_CALLBACK_PATH:
            # Where the demo points Twilio's StatusCallback; the sandbox itself never calls it.
            return Reply(204)
        route = self._route(req)
        if route is None:
            return Reply(
                404, {"errors": [{"message": f"no such endpoint: {req.method} {req.path}"}]}
            )
        provider, handler = route
        with self._lock:
            gate = self._stalled.get(provider)
        if gate is not None:
            await _released(gate)
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        fault = self._take_fault(provider)
        if fault is not None and fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
            if not (fault.status or fault.lose_response):
                fault = None  # slow, and otherwise as usual
        processes = fault is None or fault.lose_response or fault.after_processing
        if processes:
            reply = handler(req)
            with self._lock:
                for resource in reply.twilio_resources:
                    self._twilio_messages.append(resource)
                    self._twilio_send_after[resource["sid"]] = self.twilio_send_after_seconds
            self._record(reply.accepted)
        if fault is None:
            return reply
        if fault.lose_response:
            return None
        headers = {}
        if fault.retry_after is not None and provider == "sendgrid" and fault.status == 429:
            # SendGrid's 429 names when its refresh period ends (epoch seconds, of the real
            # clock the client reads), no Retry-After
            # (twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits)
            reset = time.time() + fault.retry_after
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.0f}"}
        elif fault.retry_after is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"}
        return Reply(fault.status, {"error": "injected fault", "status": fault.status}, headers)

    def _route(self, req: Request) -> tuple[str, Callable[[Request], Reply]] | None:
        creds = self.credentials
        if self.iterable.handles(req.method, req.path):
            return "iterable", self.iterable.handle
        if req.method == "GET":
            if m := TWILIO_PATH.match(req.path):
                account = m.group(1)
                return "twilio", lambda r: self._list_twilio(r, account)
            if req.path == CONTENT_PATH:
                return "content", self._content
            return None
        if req.method != "POST":
            return None
        if req.path == "/v3/mail/send":
            return "sendgrid", lambda r: providers.sendgrid_mail_send(r, creds)
        if m := TWILIO_PATH.match(req.path):
            return "twilio", lambda r: providers.twilio_messages(r, creds, m.group(1), self.clock())
        if m := FCM_PATH.match(req.path):
            return "fcm", lambda r: providers.fcm_send(r, creds, m.group(1), self._token_ok)
        if req.path == google.TOKEN_PATH:
            return "google", self._grant_token
        if req.path in braze.PATHS:
            return "braze", self.braze.handle
        if req.path == customerio.BATCH_PATH:
            return "customerio", self.customerio.handle
        if req.path in customerio.SEND_PATHS:
            return "customerio", self.customerio.send_transactional
        if req.path in airship.PATHS:
            return "airship", self.airship.handle
        if req.path == WEBHOOK_PATH:
            return "webhook", self._receive_webhook
        return None

    def _content(self, req: Request) -> Reply:
        """Recommendations for `?user=`, as a team's content service would answer."""
        user = parse_qs(req.query).get("user", [""])[0]
        return Reply(200, {"user": user, "title": f"Picked for {user}", "items": ["mug", "tee"]})

    def _grant_token(self, req: Request) -> Reply:
        granted = google.token_grant(req, f"{self.base_url}{google.TOKEN_PATH}")
        if isinstance(granted, Reply):
            return granted
        token, lifetime = granted
        with self._lock:
            self._access_tokens[token] = time.time() + lifetime
            self.tokens_issued += 1
        return Reply(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def _token_ok(self, token: str) -> bool:
        if token == self.credentials.fcm_access_token:
            return True
        with self._lock:
            return self._access_tokens.get(token, 0.0) > time.time()

    def revoke_access_tokens(self) -> None:
        """As when Google revokes a service account's tokens: FCM refuses them from now on."""
        with self._lock:
            self._access_tokens.clear()

    def service_account_info(self) -> dict[str, str]:
        """The sandbox service account's key file (JSON): its tokens come from this sandbox."""
        return google.service_account_info(self.base_url, self.credentials.fcm_project_id)

    def _receive_webhook(self, req: Request) -> Reply:
        reply = providers.webhook_receive(req, self.credentials, self.clock())
        with self._lock:  # a receiver de-duplicates on webhook-id, as the spec asks
            for event in list(reply.accepted):
                self.webhook_deliveries[event["provider_message_id"]] += 1
                if self.webhook_deliveries[event["provider_message_id"]] > 1:
                    reply.accepted.remove(event)
        return reply

    def _list_twilio(self, req: Request, account_sid: str) -> Reply:
        now = self.clock()
        with self._lock:
            store = [
                providers.twilio_as_of(m, now, self._twilio_send_after[m["sid"]])
                for m in self._twilio_messages
            ]
        return providers.twilio_messages_list(req, self.credentials, account_sid, store)

    def fail_at_random(
        self,
        rate: float,
        seed: int = 0,
        providers: tuple[str, ...] = (),
        kinds: tuple[str, ...] = RANDOM_FAULTS,
    ) -> None:
        """From now on, a `rate` share of requests (to `providers`, or to any) meets a fault drawn
        at random among `kinds` (RANDOM_FAULTS): a 429 (never processed), a 503 before or after
        processing, or a lost response."""
        unknown = set(kinds) - set(RANDOM_FAULTS)
        if unknown or not kinds:
            wrong = f"fault kinds {sorted(unknown)} unknown" if unknown else "no fault kinds"
            raise ValueError(f"{wrong}; choose among {', '.join(RANDOM_FAULTS)}")
        with self._lock:
            self._random_rate = rate
            self._random = random.Random(seed)
            self._random_providers = providers
            self._random_kinds = kinds

    def _take_fault(self, provider: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.provider == provider and fault.count > 0:
                    fault.count -= 1
                    return fault
            wanted = not self._random_providers or provider in self._random_providers
            if self._random_rate and wanted and self._random.random() < self._random_rate:
                return _random_fault(provider, self._random.choice(self._random_kinds))
        return None

    def _record(self, accepted: list[dict[str, Any]]) -> None:
        if not accepted:
            return
        now = self.clock().isoformat()
        rows = [Received(received_at=now, **a) for a in accepted]
        with self._lock:
            self._received.extend(rows)
            if self.record_file is not None:
                self.record_file.parent.mkdir(parents=True, exist_ok=True)
                with self.record_file.open("a", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(json.dumps(r.__dict__) + "\n")


async def _released(gate: threading.Event) -> None:
    """Until `gate` is set from another thread (or STALL_SECONDS pass), without holding the loop."""
    deadline = time.monotonic() + STALL_SECONDS
    while not gate.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
