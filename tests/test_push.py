"""Push over FCM HTTP v1 with a service account: access tokens minted from a signed JWT at the
(sandbox's) Google token endpoint, cached, minted again near expiry or when FCM refuses them; and
tokens FCM calls dead recorded so that dbt keeps them out of use."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from activations import ledger
from activations.channels import ChannelSettings, Message, RetryPolicy, Sender
from activations.channels.core import Outgoing
from activations.channels.fcm import DEAD_PUSH_TOKEN, FcmClient
from activations.channels.google_auth import REFRESH_MARGIN_SECONDS, ServiceAccountTokens
from activations.channels.settings import ChannelSettingsError
from sandbox import Sandbox
from switchyard import landing

NOW = datetime(2026, 11, 2, 12, 0)


def push(n: int, token: str | None = None) -> Message:
    return Message(f"key-{n}", "push", token or f"tok-{n}", "Your cart", title="Still there?")


def ref(n: int) -> ledger.SendRef:
    return ledger.SendRef(f"key-{n}", "cart", "remind", f"p{n}", f"e{n}")


def sender_for(home: Path, client: FcmClient) -> Sender:
    landing.ensure_layout(home)
    writer = ledger.LedgerWriter(home, "push")
    return Sender(httpx.Client(), {"push": client}, writer, lambda: NOW, RetryPolicy(attempts=2))


def service_account(sandbox: Sandbox, clock: list[float] | None = None) -> FcmClient:
    tokens = ServiceAccountTokens.from_info(sandbox.service_account_info())
    if clock is not None:
        tokens.clock = lambda: clock[0]
    return FcmClient(sandbox.base_url, sandbox.credentials.fcm_project_id, tokens=tokens)


def test_a_minted_token_is_reused_then_minted_again_near_its_expiry(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # The client's clock starts nearly a token's life ago and is moved on by hand, so that every
    # JWT it signs is still in the time frame the token endpoint accepts (real time).
    clock = [time.time() - (3599 - REFRESH_MARGIN_SECONDS)]
    client = service_account(sandbox, clock)
    sender = sender_for(tmp_path, client)
    outcomes = sender.send_batch([Outgoing(ref(i), push(i)) for i in range(5)])
    assert [o.status for o in outcomes] == ["sent"] * 5
    assert sandbox.tokens_issued == 1 and client.tokens is not None and client.tokens.minted == 1
    clock[0] += 3599 - REFRESH_MARGIN_SECONDS - 1  # still fresh enough
    assert sender.send(ref(10), push(10)).status == "sent" and sandbox.tokens_issued == 1
    clock[0] += 2  # inside the margin: a new one
    assert sender.send(ref(11), push(11)).status == "sent" and sandbox.tokens_issued == 2


def test_a_token_fcm_refuses_is_forgotten_and_the_message_sent_with_a_new_one(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    sender = sender_for(tmp_path, service_account(sandbox))
    assert sender.send(ref(1), push(1)).status == "sent"
    sandbox.revoke_access_tokens()
    assert sender.send(ref(2), push(2)).status == "sent"  # 401, new token, sent
    assert sandbox.tokens_issued == 2
    assert [r.send_key for r in sandbox.received] == ["key-1", "key-2"]  # each once


def test_a_key_the_token_endpoint_refuses_fails_the_message_before_fcm(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {**sandbox.service_account_info(), "private_key": pem}
    client = FcmClient(
        sandbox.base_url, "switchyard-sandbox", tokens=ServiceAccountTokens.from_info(info)
    )
    outcome = sender_for(tmp_path, client).send(ref(1), push(1))
    assert outcome.status == "failed"
    assert "invalid_grant Invalid JWT Signature." in (outcome.reason or "")
    assert "SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE" in (outcome.reason or "")
    assert sandbox.requests_seen == 0 and sandbox.received == []


def test_an_unreachable_token_endpoint_is_retried_then_left_to_a_later_run(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    client = FcmClient(
        sandbox.base_url,
        "switchyard-sandbox",
        tokens=ServiceAccountTokens.from_info(
            sandbox.service_account_info(), token_uri="http://127.0.0.1:9/token"
        ),
    )
    outcome = sender_for(tmp_path, client).send(ref(1), push(1))
    # no token, no request to FCM: nothing went out, a later run tries again
    assert (outcome.status, outcome.reason) == ("deferred", "retrying")
    assert "could not reach" in (outcome.detail or "")
    assert sandbox.requests_seen == 0


@pytest.mark.parametrize("token, status", [("unregistered-tok", 404), ("invalid-tok", 400)])
def test_a_dead_token_fails_as_dead_push_token_with_fcms_words(
    tmp_path: Path, sandbox: Sandbox, token: str, status: int
) -> None:
    outcome = sender_for(tmp_path, service_account(sandbox)).send(ref(1), push(1, token))
    assert (outcome.status, outcome.http_status, outcome.reason) == (
        "failed",
        status,
        DEAD_PUSH_TOKEN,
    )
    folder = landing.table_dir(tmp_path, "ledger", "deliveries")
    (failed,) = [
        line
        for f in folder.glob("run-*.jsonl")
        for line in map(json.loads, f.open())
        if line["status"] == "failed"
    ]
    assert failed["reason"] == DEAD_PUSH_TOKEN and failed["recipient"] == token
    assert failed["reason_detail"].startswith(f"HTTP {status}: ")


def test_a_refused_payload_is_not_a_dead_token(tmp_path: Path, sandbox: Sandbox) -> None:
    bad = Message("key-1", "push", "tok-1", "x", title="t", tags={"n": 1})  # type: ignore[dict-item]
    outcome = sender_for(tmp_path, service_account(sandbox)).send(ref(1), bad)
    assert outcome.status == "failed" and outcome.reason != DEAD_PUSH_TOKEN
    assert "INVALID_ARGUMENT" in (outcome.reason or "")


def test_the_service_account_key_file_is_a_setting(tmp_path: Path, sandbox: Sandbox) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sandbox.service_account_info()))
    env = {"SWITCHYARD_CHANNELS": "providers", "SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE": str(key_file)}
    settings = ChannelSettings.from_env(env, ["push"])
    assert settings.push is not None and settings.push.project_id == "switchyard-sandbox"
    key_file.write_text(json.dumps({"type": "authorized_user"}))
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE.*type"):
        ChannelSettings.from_env(env, ["push"])
