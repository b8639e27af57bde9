"""Signed links in messages: one-click unsubscribe (RFC 8058) and the preference center.

A link carries a token (switchyard/signed_tokens.py, audience `switchyard:preferences`) naming
whose subscriptions it opens: the user id when the person has one (consent is kept by user id),
otherwise the address itself (an unsubscribe then suppresses the address). No login: the link
is the credential, so it is signed, it expires, and the collector's pages never leak it (no
Referer, no caching).

The sender mints them (SWITCHYARD_COLLECTOR_PUBLIC_URL + SWITCHYARD_LINK_SECRET); the collector,
which serves the pages, checks them with the same secret.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from switchyard import signed_tokens
from switchyard.events import MARKETING
from switchyard.signed_tokens import TokenError

__all__ = ["LinkSigner", "LinkSubject", "TokenError", "read"]

AUDIENCE = "switchyard:preferences"
SECRET_VARIABLE = "SWITCHYARD_LINK_SECRET"
URL_VARIABLE = "SWITCHYARD_COLLECTOR_PUBLIC_URL"
# CAN-SPAM wants an unsubscribe link to work for 30 days after the send; a year keeps an old
# message's link working without leaving it good forever.
DEFAULT_LIFETIME_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class LinkSubject:
    """Whose subscriptions a link opens, and what its one click unsubscribes from."""

    channel: str
    user_id: str | None = None
    address: str | None = None  # only when there is no user id
    topic: str = MARKETING  # the journey's topic, or marketing on the channel
    send_key: str | None = None  # the message the link came in (feedback: its unsubscribe)


@dataclass(frozen=True)
class LinkSigner:
    base_url: str  # where the collector is reached from the internet
    secret: str
    lifetime: int = DEFAULT_LIFETIME_SECONDS
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", _key(self.secret))  # once: every message signs with it

    def token(self, subject: LinkSubject, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {"aud": AUDIENCE, "iat": issued, "exp": issued + self.lifetime}
        claims["ch"] = subject.channel
        claims["top"] = subject.topic
        if subject.user_id:
            claims["sub"] = subject.user_id
        elif subject.address:
            claims["adr"] = subject.address
        else:
            raise ValueError("a link names a user id or an address")
        if subject.send_key:
            claims["key"] = subject.send_key
        return signed_tokens.issue(self._key, claims)

    def urls(self, subject: LinkSubject, now: float | None = None) -> tuple[str, str]:
        """The one-click unsubscribe URL and the preference center's, under one token."""
        base, token = self.base_url.rstrip("/"), self.token(subject, now)
        return f"{base}/unsubscribe/{token}", f"{base}/preferences/{token}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LinkSigner | None:
        """The signer the settings describe; None when no link secret is set (no links)."""
        env = os.environ if env is None else env
        secret = secret_from_env(env)
        url = env.get(URL_VARIABLE, "").strip()
        if not secret:
            return None
        host = urllib.parse.urlsplit(url).hostname if "://" in url else None
        loopback = host in ("127.0.0.1", "localhost", "::1")
        if not (url.startswith("https://") or url.startswith("http://") and loopback):
            raise ValueError(
                f"{SECRET_VARIABLE} is set, so messages carry signed unsubscribe and preference "
                f"links: set {URL_VARIABLE} to the collector's public https URL they point to "
                "(RFC 8058 one-click needs https; http only on this machine)"
            )
        return cls(url, secret)


def secret_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """SWITCHYARD_LINK_SECRET as the sender and the collector both read it (a secret mounted
    from a file often ends in a newline); None when unset."""
    return (os.environ if env is None else env).get(SECRET_VARIABLE, "").strip() or None


def check_secret(secret: str) -> bytes:
    return signed_tokens.check_secret(secret, SECRET_VARIABLE)


def _key(secret: str) -> bytes:
    return signed_tokens.purpose_key(check_secret(secret), AUDIENCE)


def read(secret: str, token: str, now: float | None = None) -> LinkSubject:
    """The subject of a link this secret signed; TokenError when it is not one, or expired."""
    claims = signed_tokens.verify(_key(secret), token, AUDIENCE, now)
    channel, topic = claims.get("ch"), claims.get("top")
    user_id, address, send_key = claims.get("sub"), claims.get("adr"), claims.get("key")
    if not isinstance(channel, str) or not isinstance(topic, str):
        raise TokenError("the link names no channel and topic")
    user = user_id if isinstance(user_id, str) and user_id else None
    by_address = address if user is None and isinstance(address, str) and address else None
    if user is None and by_address is None:
        raise TokenError("the link names no person")
    return LinkSubject(
        channel, user, by_address, topic, send_key if isinstance(send_key, str) else None
    )
