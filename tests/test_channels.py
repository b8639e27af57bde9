"""Channel clients against the real local sandbox, and their requests against the providers'
published OpenAPI descriptions."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jsonschema
import pytest
import stamina
import stamina.instrumentation

from activations import ledger
from activations.channels import ChannelSettings, Message, RetryPolicy, Sender
from activations.channels.core import BatchingClient, InFlight, Outgoing
from activations.channels.message import Outcome
from activations.channels.policy import RateLimiter
from activations.channels.transport import KeepAliveTransport
from activations.channels.twilio import TwilioClient
from sandbox import SANDBOX_CREDENTIALS, Fault, Sandbox
from switchyard import landing
from switchyard.preference_links import LinkSubject
from switchyard.settings import PROJECT_DIR

SPECS = PROJECT_DIR / "tests" / "specs"  # the providers' own OpenAPI descriptions
TWILIO_SPEC = "twilio_api_v2010_messages.json"
MESSAGES = "/paths/~12010-04-01~1Accounts~1{AccountSid}~1Messages.json"
NOW = datetime(2026, 11, 2, 12, 0)
REF = ledger.SendRef("key-1", "journey", "step", "person-1", "entry-1")

EMAIL = Message("key-1", "email", "ada@example.com", "Hi Ada", subject="Your cart")
SMS = Message("key-1", "sms", "+14155550123", "Hi Sam")
PUSH = Message("key-1", "push", "tok-sam", "Your cart", title="Still there?")
WEBHOOK = Message("key-1", "webhook", "person-1", "Your cart", subject="Cart")


def as_json_schema(node: object) -> object:
    """OpenAPI 3.0's `nullable: true` is JSON Schema's `type: [T, "null"]`."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def spec_schema(file: str, pointer: str) -> dict[str, object]:
    spec = as_json_schema(json.loads((SPECS / file).read_text()))
    assert isinstance(spec, dict)
    return {"$ref": f"#{pointer}", "components": spec["components"], "paths": spec["paths"]}


@pytest.fixture
def sender(tmp_path: Path, sandbox: Sandbox) -> Iterator[tuple[Sender, Path]]:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "test-run")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    # through the transport a run sends with (activations/channels/transport.py)
    with httpx.Client(transport=KeepAliveTransport(8)) as http:
        yield Sender(http, clients, writer, lambda: NOW, RetryPolicy(attempts=3)), tmp_path


def built(message: Message, settings: ChannelSettings | None = None) -> httpx.Request:
    clients = (settings or ChannelSettings.for_sandbox("http://127.0.0.1:9")).clients()
    return clients[message.channel].build_request(httpx.Client(), message)


def test_sendgrid_request_matches_published_spec() -> None:
    schema = spec_schema(
        "tsg_mail_v3.json",
        "/components/requestBodies/PostMailSend/content/application~1json/schema",
    )
    request = built(EMAIL)
    jsonschema.validate(json.loads(request.content), schema)
    assert request.url.path == "/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {SANDBOX_CREDENTIALS.sendgrid_api_key}"


def test_twilio_request_matches_published_spec() -> None:
    pointer = f"{MESSAGES}/post/requestBody/content/application~1x-www-form-urlencoded/schema"
    schema = spec_schema(TWILIO_SPEC, pointer)
    request = built(SMS)
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    jsonschema.validate(form, schema)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"].startswith("Basic ")
    # Messages create takes no idempotency key; the send key rides on the status callback.
    assert "i-twilio-idempotency-token" not in request.headers
    callback = httpx.URL(form["StatusCallback"])
    assert (callback.path, callback.params["send_key"]) == ("/_sandbox/twilio/status", "key-1")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/cb", "https://h/cb?send_key=k%2F1"),
        ("https://h/cb?a=1&send_key=old", "https://h/cb?a=1&send_key=k%2F1"),
        # Twilio's connection overrides are a fragment: the key goes before it, to the server
        ("https://h/cb?a=1#rc=3&rp=all", "https://h/cb?a=1&send_key=k%2F1#rc=3&rp=all"),
    ],
)
def test_the_status_callback_carries_the_send_key(url: str, expected: str) -> None:
    twilio = TwilioClient("https://api.twilio.test", "AC1", "t", from_number="+1",
                          status_callback_url=url)  # fmt: skip
    assert twilio.status_callback("k/1") == expected


def test_twilio_lookup_and_sandbox_list_match_published_spec(
    sender: tuple[Sender, Path], sandbox: Sandbox
) -> None:
    s, _ = sender
    assert s.send(REF, SMS).status == "sent"
    asked: list[httpx.Request] = []
    client = s.clients["sms"]
    assert isinstance(client, TwilioClient)
    with httpx.Client(event_hooks={"request": [asked.append]}) as http:
        assert client.find_sent(http, SMS, NOW, exclude=()) is not None
    (lookup,) = asked
    spec = json.loads((SPECS / TWILIO_SPEC).read_text())
    listing = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["get"]
    assert set(lookup.url.params) <= {p["name"] for p in listing["parameters"]}
    # To and From only: DateSent would hide a message still queued (date_sent is null then).
    assert dict(lookup.url.params) == {
        "To": SMS.recipient,
        "From": "+14155550100",
        "PageSize": "1000",
    }
    response = httpx.get(lookup.url, headers=lookup.headers)
    schema = spec_schema(
        TWILIO_SPEC, f"{MESSAGES}/get/responses/200/content/application~1json/schema"
    )
    jsonschema.validate(response.json(), schema)
    (listed,) = response.json()["messages"]
    assert (listed["to"], listed["body"], listed["direction"]) == (
        SMS.recipient,
        SMS.body,
        "outbound-api",
    )


@pytest.mark.parametrize(
    "message, provider_id",
    [
        (EMAIL, r"^\w{22}$"),
        (SMS, r"^SM[0-9a-f]{32}$"),
        (PUSH, r"^projects/switchyard-sandbox/messages/\d+$"),
        (WEBHOOK, r"^key-1$"),  # the webhook-id is the send key
    ],
)
def test_each_channel_sends_and_ledgers(
    sender: tuple[Sender, Path], sandbox: Sandbox, message: Message, provider_id: str
) -> None:
    s, home = sender
    outcome = s.send(REF, message)
    assert outcome.status == "sent"
    assert outcome.provider_message_id and re.match(provider_id, outcome.provider_message_id)
    (got,) = sandbox.received
    assert (got.channel, got.recipient, got.body, got.send_key) == (
        message.channel,
        message.recipient,
        message.body,
        "key-1",
    )
    s.ledger.close()
    state = ledger.read_state(home)
    assert state.last_status == {"key-1": "sent"} and state.attempts == {"key-1": 1}
    folder = landing.table_dir(home, "ledger", "deliveries")
    lines = [json.loads(line) for f in folder.glob("*.jsonl") for line in f.open()]
    # an SMS's billed segments are on its lines; other channels have none
    assert {line["segments"] for line in lines} == {1 if message.channel == "sms" else None}


def test_bad_credentials_fail_with_the_providers_reason(tmp_path: Path, sandbox: Sandbox) -> None:
    landing.ensure_layout(tmp_path)
    good = ChannelSettings.for_sandbox(sandbox.base_url)
    assert good.email and good.sms
    bad = replace(
        good,
        email=replace(good.email, api_key="SG.wrong"),
        sms=replace(good.sms, auth_token="wrong"),
    )
    s = Sender(httpx.Client(), bad.clients(), ledger.LedgerWriter(tmp_path, "r"), lambda: NOW)
    email = s.send(REF, EMAIL)
    sms = s.send(ledger.SendRef("key-2", "j", "s", "p", "e"), SMS)
    assert (email.status, email.http_status) == ("failed", 401)
    assert email.reason == (
        "HTTP 401: The provided authorization grant is invalid, expired, or revoked"
    )
    assert (sms.status, sms.reason) == ("failed", "HTTP 401: 20003 Authenticate")
    assert sandbox.received == []


def test_429_is_retried_after_retry_after(sender: tuple[Sender, Path], sandbox: Sandbox) -> None:
    s, _ = sender
    sandbox.fail_next(Fault("fcm", 429, count=2, retry_after=0))
    assert s.send(REF, PUSH).status == "sent"
    assert sandbox.requests_seen == 3 and len(sandbox.received) == 1


def test_429_beyond_attempts_is_left_to_a_later_run(
    sender: tuple[Sender, Path], sandbox: Sandbox
) -> None:
    # Twilio never processes a 429: the attempt went nowhere, so it is not in doubt. A later run
    # tries again (after RetryPolicy's wait across runs); the fifth refusal is the dead letter.
    s, home = sender
    sandbox.fail_next(Fault("twilio", 429, count=100))
    outcome = s.send(REF, SMS)
    assert (outcome.status, outcome.reason) == ("deferred", "retrying")
    until = ledger.deferred_until(outcome.detail)
    assert until is not None and NOW + timedelta(seconds=60) <= until <= NOW + timedelta(seconds=72)
    assert outcome.detail.endswith("; gave up after retries: HTTP 429 rate limited")
    assert sandbox.requests_seen == 3
    s.ledger.sync()
    state = ledger.read_state(home)
    assert state.last_status == {"key-1": "deferred"} and state.attempts == {"key-1": 1}
    assert state.pending == {} and state.refused("key-1")  # settled: not in doubt
    # the wait doubles with each refusal, up to its maximum
    fourth = s.send(REF, SMS, attempt_number=4)
    until = ledger.deferred_until(fourth.detail)
    assert until is not None and NOW + timedelta(seconds=480) <= until
    assert sandbox.received == []


@pytest.mark.parametrize("message, provider", [(EMAIL, "sendgrid"), (SMS, "twilio"), (PUSH, "fcm")])
def test_5xx_is_an_unknown_outcome_never_retried_blindly(
    sender: tuple[Sender, Path], sandbox: Sandbox, message: Message, provider: str
) -> None:
    # None of SendGrid mail/send, Twilio Messages or FCM send takes an idempotency key: a 5xx may
    # have been processed, so it is not sent again within the call.
    s, home = sender
    sandbox.fail_next(Fault(provider, 503, count=1))
    outcome = s.send(REF, message)
    assert (outcome.status, outcome.http_status, outcome.reason) == ("unknown", 503, "HTTP 503")
    posts = 1
    lookups = 1 if provider == "twilio" else 0  # Twilio: listed to see whether it went out
    assert sandbox.requests_seen == posts + lookups and sandbox.received == []
    s.ledger.close()
    state = ledger.read_state(home)
    assert state.last_status == {"key-1": "unknown"} and state.attempts == {"key-1": 1}


@pytest.mark.parametrize("message, provider", [(EMAIL, "sendgrid"), (PUSH, "fcm")])
def test_a_lost_response_leaves_the_key_unsettled_with_one_attempt(
    sender: tuple[Sender, Path], sandbox: Sandbox, message: Message, provider: str
) -> None:
    s, home = sender
    sandbox.fail_next(Fault(provider, lose_response=True))
    outcome = s.send(REF, message)
    assert outcome.status == "unknown" and "no response" in (outcome.reason or "")
    assert len(sandbox.received) == 1  # the provider did process it
    assert sandbox.requests_seen == 1  # and it was not sent again
    s.ledger.close()
    state = ledger.read_state(home)
    assert state.last_status == {"key-1": "unknown"} and state.attempts == {"key-1": 1}
    pending = state.pending["key-1"]
    assert (pending.channel, pending.recipient, pending.body) == (
        message.channel,
        message.recipient,
        message.body,
    )


def test_a_lost_twilio_response_is_settled_by_listing_messages(
    sender: tuple[Sender, Path], sandbox: Sandbox
) -> None:
    s, home = sender
    sandbox.fail_next(Fault("twilio", lose_response=True))
    outcome = s.send(REF, SMS)
    (got,) = sandbox.received
    assert (outcome.status, outcome.provider_message_id) == ("sent", got.provider_message_id)
    assert outcome.reason == "reconciled: found by the provider's message lookup"
    s.ledger.close()
    assert ledger.read_state(home).last_status == {"key-1": "sent"}


def test_a_lost_twilio_response_never_claims_a_message_sent_for_another_key(
    sender: tuple[Sender, Path], sandbox: Sandbox
) -> None:
    s, _ = sender
    first = s.send(REF, SMS)  # the same text to the same number, for another entry
    sandbox.fail_next(Fault("twilio", 503))
    second = s.send(ledger.SendRef("key-2", "j", "s", "p", "e2"), replace(SMS, send_key="key-2"))
    assert first.status == "sent" and first.provider_message_id
    assert (second.status, second.provider_message_id, second.reconciled) == (
        "unknown",
        None,
        False,
    )


def test_attempted_is_durable_before_the_provider_call(tmp_path: Path, sandbox: Sandbox) -> None:
    landing.ensure_layout(tmp_path)
    seen_at_call: list[dict[str, str]] = []

    class LedgerReadingTransport(httpx.HTTPTransport):
        """Reads the ledger from disk, in another DuckDB, the moment the request leaves."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen_at_call.append(dict(ledger.read_state(tmp_path).last_status))
            return super().handle_request(request)

    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(transport=LedgerReadingTransport()), clients, writer, lambda: NOW)
    sandbox.fail_next(Fault("sendgrid", lose_response=True))
    assert s.send(REF, EMAIL).status == "unknown"
    writer.close()
    assert seen_at_call == [{"key-1": "attempted"}]
    assert ledger.read_state(tmp_path).attempts == {"key-1": 1}


@pytest.mark.parametrize(
    "provider, message, wait", [("twilio", SMS, 7200), ("sendgrid", EMAIL, 120)]
)
def test_a_wait_beyond_the_policys_is_left_to_a_run_after_it(
    tmp_path: Path, sandbox: Sandbox, provider: str, message: Message, wait: int
) -> None:
    # Twilio asks for the wait in Retry-After; SendGrid's 429 names when its refresh period ends
    # (X-RateLimit-Reset) instead. Beyond the policy's maximum: no try within the run, and a
    # later run's not before then.
    landing.ensure_layout(tmp_path)
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    policy = RetryPolicy(attempts=5, max_retry_after_seconds=60)
    s = Sender(httpx.Client(), clients, ledger.LedgerWriter(tmp_path, "r"), lambda: NOW, policy)
    sandbox.fail_next(Fault(provider, 429, count=5, retry_after=wait))
    outcome = s.send(REF, message)
    assert (outcome.status, outcome.reason, sandbox.requests_seen) == ("deferred", "retrying", 1)
    until = ledger.deferred_until(outcome.detail)
    # (the reset time is whole seconds; the jitter adds up to a fifth)
    assert until is not None
    assert NOW + timedelta(seconds=wait - 2) <= until <= NOW + timedelta(seconds=wait * 1.2)
    assert "is longer than the policy's maximum of 60 s" in (outcome.detail or "")
    assert sandbox.received == []


def test_a_shorter_retry_after_is_waited_for(tmp_path: Path, sandbox: Sandbox) -> None:
    landing.ensure_layout(tmp_path)
    waits: list[float] = []
    stamina.set_testing(False)  # real waits: this test is about the wait itself
    stamina.instrumentation.set_on_retry_hooks([lambda details: waits.append(details.wait_for)])
    try:
        clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
        policy = RetryPolicy(attempts=3, max_retry_after_seconds=60, wait_initial_seconds=0.01)
        writer = ledger.LedgerWriter(tmp_path, "r")
        s = Sender(httpx.Client(), clients, writer, lambda: NOW, policy)
        sandbox.fail_next(Fault("fcm", 429, count=1, retry_after=1))
        started = time.monotonic()
        assert s.send(REF, PUSH).status == "sent"
        elapsed = time.monotonic() - started
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)
    assert waits == [1.0]  # the provider's Retry-After, not the policy's 0.01 s backoff
    assert elapsed >= 1.0
    assert sandbox.requests_seen == 2 and len(sandbox.received) == 1


def test_unreachable_provider_fails_after_retries(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    clients = ChannelSettings.for_sandbox("http://127.0.0.1:9").clients()  # nothing listens
    s = Sender(
        httpx.Client(),
        clients,
        ledger.LedgerWriter(tmp_path, "r"),
        lambda: NOW,
        RetryPolicy(attempts=2),
    )
    outcome = s.send(REF, EMAIL)
    assert (outcome.status, outcome.reason) == ("deferred", "retrying")
    assert "; gave up after retries: could not connect" in (outcome.detail or "")


@pytest.mark.parametrize(
    "path, body, content_type, auth, status, error",
    [
        (
            "/v3/mail/send",
            {
                "personalizations": [{"to": [{"email": "a@example.com"}]}],
                "subject": "s",
                "content": [{"type": "text/plain", "value": "v"}],
            },
            "application/json",
            "Bearer SG.sandbox-key",
            400,
            {"field": "from.email"},
        ),
        (
            "/v3/mail/send",
            {
                "personalizations": [{"to": [{"email": "a@example.com"}]}] * 1001,
                "from": {"email": "f@example.com"},
                "subject": "s",
                "content": [{"type": "text/plain", "value": "v"}],
            },
            "application/json",
            "Bearer SG.sandbox-key",
            400,
            {"field": "personalizations"},
        ),
        (
            f"/2010-04-01/Accounts/{SANDBOX_CREDENTIALS.twilio_account_sid}/Messages.json",
            "From=%2B14155550100&Body=hi",
            "application/x-www-form-urlencoded",
            "twilio",
            400,
            {"code": 21604},
        ),
        (
            f"/2010-04-01/Accounts/{SANDBOX_CREDENTIALS.twilio_account_sid}/Messages.json",
            "To=555-0100&From=%2B14155550100&Body=hi",
            "application/x-www-form-urlencoded",
            "twilio",
            400,
            {"code": 21211},
        ),
        (
            "/v1/projects/switchyard-sandbox/messages:send",
            {"message": {"notification": {}}},
            "application/json",
            "Bearer ya29.sandbox-token",
            400,
            {"status": "INVALID_ARGUMENT"},
        ),
    ],
)
def test_sandbox_rejects_what_the_provider_rejects(
    sandbox: Sandbox,
    path: str,
    body: object,
    content_type: str,
    auth: str,
    status: int,
    error: dict[str, object],
) -> None:
    if auth == "twilio":
        auth = httpx.BasicAuth(
            SANDBOX_CREDENTIALS.twilio_account_sid, SANDBOX_CREDENTIALS.twilio_auth_token
        )._auth_header
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(
        sandbox.base_url + path,
        content=content,
        headers={"content-type": content_type, "authorization": auth},
    )
    assert response.status_code == status
    payload = response.json()
    detail = payload["errors"][0] if "errors" in payload else payload.get("error", payload)
    assert {k: detail.get(k) for k in error} == error
    assert sandbox.received == []


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b'{"messages": [null]}',
        b'{"messages": {"sid": "SM1"}}',
        b'{"messages": [{"to": "+14155550123"}]}',
        b'{"next_page_uri": "/2010-04-01/..."}',
    ],
)
def test_an_unreadable_twilio_list_fails_the_lookup_not_the_run(
    tmp_path: Path, answer: bytes
) -> None:
    # An in-process transport: the sandbox answers as Twilio does, never like this.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer))
    landing.ensure_layout(tmp_path)
    clients = ChannelSettings.for_sandbox("http://twilio.test").clients()
    writer = ledger.LedgerWriter(tmp_path, "r")
    s = Sender(httpx.Client(transport=transport), clients, writer, lambda: NOW)
    outcome = s.reconcile(REF, SMS, NOW, attempt_number=1)
    assert outcome is not None and outcome.status == "unknown"
    assert (outcome.reason or "").startswith("lookup failed: Twilio Messages list: unreadable")


def batch_of(n: int, channel_message: Message = SMS) -> list[Outgoing]:
    return [
        Outgoing(
            ledger.SendRef(f"key-{i}", "journey", "step", f"person-{i}", f"entry-{i}"),
            replace(channel_message, send_key=f"key-{i}"),
        )
        for i in range(n)
    ]


def test_a_batch_is_attempted_on_disk_before_any_request_and_sent_concurrently(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    landing.ensure_layout(tmp_path)
    seen_at_call: list[dict[str, str]] = []

    class LedgerReadingTransport(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen_at_call.append(dict(ledger.read_state(tmp_path).last_status))
            return super().handle_request(request)

    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    http = httpx.Client(transport=LedgerReadingTransport())
    s = Sender(http, clients, writer, lambda: NOW, concurrency={"sms": 4})
    sandbox.fail_next(Fault("twilio", delay_seconds=0.3, count=8))  # a slow provider
    outcomes = s.send_batch(batch_of(8))
    s.close()
    writer.close()
    assert [o.status for o in outcomes] == ["sent"] * 8
    # every attempt of the batch was on disk when each request left
    assert seen_at_call == [{f"key-{i}": "attempted" for i in range(8)}] * 8
    # several requests in flight at once, never more than the channel's concurrency
    assert 1 < sandbox.most_in_flight <= 4
    assert ledger.read_state(tmp_path).last_status == {f"key-{i}": "sent" for i in range(8)}


def test_one_message_failing_does_not_fail_its_batch(tmp_path: Path, sandbox: Sandbox) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(), clients, writer, lambda: NOW)
    batch = batch_of(3)
    batch[1] = replace(batch[1], message=replace(batch[1].message, recipient="not-a-number"))
    outcomes = s.send_batch(batch)
    s.close()
    writer.close()
    assert [o.status for o in outcomes] == ["sent", "failed", "sent"]
    assert len(sandbox.received) == 2


def test_a_channel_without_a_client_sends_nothing_of_the_batch(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    s = Sender(httpx.Client(), {}, writer, lambda: NOW)
    with pytest.raises(KeyError, match="no client configured for channel 'sms'"):
        s.send_batch(batch_of(2))
    writer.close()
    assert sandbox.received == [] and ledger.read_state(tmp_path).last_status == {}


def test_a_webhook_is_signed_per_standard_webhooks_and_retried_under_one_id(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(), clients, writer, lambda: NOW, RetryPolicy(wait_initial_seconds=0))
    # The receiver took it and then failed: idempotent by webhook-id, so it is sent again, and
    # the receiver, de-duplicating on the id, keeps one.
    sandbox.fail_next(Fault("webhook", 503, after_processing=True))
    outcome = s.send(REF, WEBHOOK)
    writer.close()
    assert (outcome.status, outcome.provider_message_id) == ("sent", "key-1")
    assert sandbox.requests_seen == 2
    assert [(r.channel, r.recipient, r.body) for r in sandbox.received] == [
        ("webhook", "person-1", "Your cart")
    ]


def test_a_webhook_that_may_have_arrived_is_unknown_when_retries_run_out(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(), clients, writer, lambda: NOW, RetryPolicy(attempts=2))
    sandbox.fail_next(Fault("webhook", 503, count=2, after_processing=True))
    outcome = s.send(REF, WEBHOOK)
    writer.close()
    # The receiver has it (it answered 503 after taking it): not "failed", which would hide it.
    assert outcome.status == "unknown" and "gave up after retries: HTTP 503" in (
        outcome.reason or ""
    )
    assert len(sandbox.received) == 1
    assert ledger.read_state(tmp_path).last_status == {"key-1": "unknown"}
    # A 429 was never processed: running out of retries on it leaves it to a later run, and
    # settles the attempt (this one went nowhere).
    sandbox.fail_next(Fault("webhook", 429, count=2, retry_after=0))
    writer = ledger.LedgerWriter(tmp_path, "r2")
    later = NOW + timedelta(minutes=1)
    s = Sender(httpx.Client(), clients, writer, lambda: later, RetryPolicy(attempts=2))
    assert s.send(REF, WEBHOOK, attempt_number=2).status == "deferred"
    writer.close()
    state = ledger.read_state(tmp_path)
    # the first attempt may have arrived: still in doubt, the second settled as refused
    assert state.last_status == {"key-1": "deferred"} and state.doubtful("key-1") == 1
    assert (state.attempts, state.refusals) == ({"key-1": 2}, {"key-1": 1})
    # A 503 after processing and then a 429 in one run: it may have arrived, so unknown; as
    # with a 503 asking for a longer wait than the policy's.
    for n, faults in enumerate(
        (
            [Fault("webhook", 503, after_processing=True), Fault("webhook", 429, count=2)],
            [Fault("webhook", 503, after_processing=True, retry_after=7200)],
        )
    ):
        for fault in faults:
            sandbox.fail_next(fault)
        writer = ledger.LedgerWriter(tmp_path, f"r{n + 3}")
        s = Sender(httpx.Client(), clients, writer, lambda: later, RetryPolicy(attempts=3))
        ref = ledger.SendRef(f"key-{n + 3}", "j", "s", "p", "e")
        received = len(sandbox.received)
        assert s.send(ref, replace(WEBHOOK, send_key=ref.send_key)).status == "unknown"
        writer.close()
        assert len(sandbox.received) == received + 1


def test_a_webhook_with_a_wrong_secret_or_an_old_timestamp_is_refused(sandbox: Sandbox) -> None:
    settings = ChannelSettings.for_sandbox(sandbox.base_url)
    assert settings.webhook is not None
    wrong = replace(settings.webhook, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==")
    stale = replace(settings.webhook, clock=lambda: time.time() - 3600)
    with httpx.Client() as http:
        for client, status, why in ((wrong, 401, "signature"), (stale, 400, "timestamp")):
            response = http.send(client.build_request(http, WEBHOOK))
            assert response.status_code == status and why in response.text
            assert client.read_response(response).status == "failed"
    assert sandbox.received == []


def test_marketing_email_carries_one_click_unsubscribe_headers(
    sender: tuple[Sender, Path], sandbox: Sandbox
) -> None:
    s, _ = sender
    links = ChannelSettings.for_sandbox(sandbox.base_url).links
    assert links is not None
    url, _ = links.urls(LinkSubject("email", "u-ada", send_key="key-1"))
    assert s.send(REF, replace(EMAIL, unsubscribe_url=url)).status == "sent"
    (got,) = sandbox.received
    assert got.list_unsubscribe == f"<{url}>"
    request = built(replace(EMAIL, unsubscribe_url=url))
    (personalization,) = json.loads(request.content)["personalizations"]
    assert personalization["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # no link (a transactional message): no headers
    (plain,) = json.loads(built(EMAIL).content)["personalizations"]
    assert "headers" not in plain
    # what a mailbox provider does with them (RFC 8058 section 3.2)
    answer = httpx.post(url, content=b"List-Unsubscribe=One-Click")
    assert answer.status_code == 200 and sandbox.unsubscribed == ["key-1"]
    forged = httpx.post(url[:-3] + "abc", content=b"List-Unsubscribe=One-Click")
    assert forged.status_code == 400 and sandbox.unsubscribed == ["key-1"]


def test_a_run_stopped_mid_batch_sends_nothing_more_and_records_what_went(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    landing.ensure_layout(tmp_path)
    requests = 0

    class StoppedAtTheThird(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal requests
            requests += 1
            if requests == 3:
                raise KeyboardInterrupt  # Ctrl-C, or the run cancelled, during this request
            return super().handle_request(request)

    class SlowToCancel(Sender):
        def abandon(self, flight: InFlight) -> None:
            time.sleep(0.5)  # a loaded machine: the worker would go on to the next requests
            super().abandon(flight)

    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = SlowToCancel(httpx.Client(transport=StoppedAtTheThird()), clients, writer, lambda: NOW,
                     concurrency={"sms": 1})  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        s.send_batch(batch_of(10))
    s.close()
    writer.close()
    sent = {r.send_key for r in sandbox.received}
    # the two before the stop, and at most the one the worker had already taken on: nothing
    # queued goes out after the stop, not even when the sender closes
    assert {"key-0", "key-1"} <= sent <= {"key-0", "key-1", "key-3"}
    state = ledger.read_state(tmp_path)
    assert {k for k, status in state.last_status.items() if status == "sent"} == sent
    # the rest never left: unsettled, so the next run sends them (once)
    assert {k for k, status in state.last_status.items() if status == "attempted"} == {
        f"key-{i}" for i in range(2, 10)
    } - sent


def emails(n: int) -> list[Outgoing]:
    return [
        Outgoing(
            ledger.SendRef(f"key-{i}", "journey", "step", f"person-{i}", "entry-1"),
            Message(
                f"key-{i}",
                "email",
                f"ada{i}@example.com",
                f"Hi Ada {i}, -x- stays",
                subject=f"Your cart {i}",
            ),
        )  # fmt: skip
        for i in range(n)
    ]


def send_emails(home: Path, sandbox: Sandbox, batch: list[Outgoing]) -> list[str]:
    landing.ensure_layout(home)
    writer = ledger.LedgerWriter(home, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(), clients, writer, lambda: NOW, RetryPolicy(attempts=2))
    outcomes = s.send_batch(batch)
    s.close()
    writer.close()
    return [o.status for o in outcomes]


def test_emails_share_a_sendgrid_request_each_with_its_own_subject_and_body(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    batch = emails(5)
    assert send_emails(tmp_path, sandbox, batch) == ["sent"] * 5
    assert sandbox.requests_seen == 1  # five personalizations in one mail/send
    got = {r.send_key: (r.recipient, r.subject, r.body) for r in sandbox.received}
    assert got == {
        o.ref.send_key: (o.message.recipient, o.message.subject, o.message.body) for o in batch
    }
    assert ledger.read_state(tmp_path).last_status == {f"key-{i}": "sent" for i in range(5)}


def test_a_batched_request_matches_sendgrids_published_spec() -> None:
    schema = spec_schema(
        "tsg_mail_v3.json",
        "/components/requestBodies/PostMailSend/content/application~1json/schema",
    )
    client = ChannelSettings.for_sandbox("http://127.0.0.1:9").clients()["email"]
    assert isinstance(client, BatchingClient)
    request = client.build_batch_request(httpx.Client(), [o.message for o in emails(3)])
    payload = json.loads(request.content)
    jsonschema.validate(payload, schema)
    assert len(payload["personalizations"]) == 3


def test_one_bad_address_refuses_the_request_whole_then_only_it_fails(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    batch = emails(4)
    batch[2] = replace(batch[2], message=replace(batch[2].message, recipient="not-an-address"))
    assert send_emails(tmp_path, sandbox, batch) == ["sent", "sent", "failed", "sent"]
    assert sandbox.requests_seen == 1 + 4  # the refused batch, then each alone
    assert sorted(r.send_key or "" for r in sandbox.received) == ["key-0", "key-1", "key-3"]


def test_a_body_beyond_sendgrids_substitution_limit_goes_alone(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    batch = emails(3)
    long = replace(batch[1].message, body="x" * 10_000)
    batch[1] = replace(batch[1], message=long)
    assert send_emails(tmp_path, sandbox, batch) == ["sent"] * 3
    assert sandbox.requests_seen == 2
    assert {r.send_key: r.body for r in sandbox.received}["key-1"] == "x" * 10_000


def test_a_lost_batch_response_leaves_every_message_in_it_unknown(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    sandbox.fail_next(Fault("sendgrid", status=502, after_processing=True))
    assert send_emails(tmp_path, sandbox, emails(3)) == ["unknown"] * 3
    assert sandbox.requests_seen == 1  # SendGrid takes no idempotency key: never sent again now


def test_a_batch_takes_a_token_per_message_from_the_rate_limit() -> None:
    limiter = RateLimiter(per_second=100.0)  # a burst of 100
    started = time.monotonic()
    limiter.acquire(100)  # the full bucket
    limiter.acquire(50)  # half a second's worth more
    assert time.monotonic() - started >= 0.45


def test_one_address_twice_in_a_batch_goes_in_a_request_of_its_own(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # SendGrid refuses a request that names an address twice; two steps for one person (or a
    # shared family address) must not cost every email of the batch a request of its own.
    batch = emails(4)
    batch[3] = replace(batch[3], message=replace(batch[3].message, recipient="ada0@example.com"))
    assert send_emails(tmp_path, sandbox, batch) == ["sent"] * 4
    assert sandbox.requests_seen == 2


def test_the_sandbox_refuses_an_address_twice_as_sendgrid_does(sandbox: Sandbox) -> None:
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["email"]
    assert isinstance(client, BatchingClient)
    twice = [o.message for o in emails(2)]
    twice[1] = replace(twice[1], recipient=twice[0].recipient)
    with httpx.Client() as http:
        response = http.send(client.build_batch_request(http, twice))
    assert response.status_code == 400
    assert "should only be included once" in response.json()["errors"][0]["message"]


def test_a_batch_is_no_larger_than_the_rate_limits_burst(tmp_path: Path, sandbox: Sandbox) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    s = Sender(httpx.Client(), clients, writer, lambda: NOW, limits={"email": RateLimiter(2.0)})
    assert [o.status for o in s.send_batch(emails(5))] == ["sent"] * 5
    s.close()
    writer.close()
    assert sandbox.requests_seen == 3  # 2 + 2 + 1: two emails a second, never 5 at once


def test_an_email_the_batch_cannot_read_goes_alone_and_fails_alone(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    batch = emails(3)
    broken = replace(batch[1].message, body="half a surrogate \ud800")
    batch[1] = replace(batch[1], message=broken)
    statuses = send_emails(tmp_path, sandbox, batch)
    assert statuses[0] == statuses[2] == "sent" and statuses[1] != "sent"
    assert sorted(r.send_key or "" for r in sandbox.received) == ["key-0", "key-2"]


def test_a_batch_split_gives_each_message_its_own_outcome(tmp_path: Path, sandbox: Sandbox) -> None:
    # A subject the batched request cannot encode: the batch is split, the others go, and
    # none of them is left unknown (an unknown email is sent once more: a duplicate).
    batch = emails(3)
    batch[1] = replace(batch[1], message=replace(batch[1].message, subject="half \ud800"))
    statuses = send_emails(tmp_path, sandbox, batch)
    assert (statuses[0], statuses[2]) == ("sent", "sent")
    assert sorted(r.send_key or "" for r in sandbox.received) == ["key-0", "key-2"]


def test_only_the_providers_own_failures_take_a_channel_out(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    writer = ledger.LedgerWriter(tmp_path, "r")
    s = Sender(httpx.Client(), {}, writer, lambda: NOW)
    for _ in range(5):  # mailboxes that do not exist: the server is fine
        s._note_health("email", Outcome("failed", 550, reason="SMTP 550 no such user"))
    assert not s.channel_down("email")
    for _ in range(3):
        s._note_health("email", Outcome("failed", reason="gave up", provider_fault=True))
    assert s.channel_down("email")
    writer.close()
