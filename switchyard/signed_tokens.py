"""Compact JWTs (RFC 7519) signed with HMAC-SHA256: the inbox's per-user tokens and the signed
links in messages (unsubscribe, preference center) are both these, told apart by `aud` so that
one purpose's token is never accepted for the other."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
OWN_AUDIENCES = frozenset({"switchyard:preferences"})  # never accepted where none is asked


class TokenError(ValueError):
    """The token was not issued under this secret for this purpose, or is no longer good."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("the token is not base64url") from exc


def check_secret(secret: str, variable: str) -> bytes:
    """The secret as an HS256 key; a short one is refused, naming the variable to set."""
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{variable} must be at least {MIN_SECRET_BYTES} bytes (HS256's key length); make "
            "one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return key


def _sign(key: bytes, signing_input: str) -> str:
    return b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def issue(key: bytes, claims: Mapping[str, Any]) -> str:
    header = {"alg": ALGORITHM, "typ": "JWT"}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{_sign(key, signing_input)}"


def verify(
    key: bytes, token: str, audience: str | None, now: float | None = None
) -> dict[str, Any]:
    """The token's claims; TokenError when it is forged, altered, of another algorithm (`none`
    included), expired or without an expiry, or meant for another audience (`audience` None:
    any but Switchyard's own, which another JWT library's `aud` does not clash with)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT (three dot-separated parts)")
    header = _json(parts[0])
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"the token's algorithm must be {ALGORITHM}")
    expected = _sign(key, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "replace")):
        raise TokenError("the token's signature does not match")
    claims = _json(parts[1])
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not _finite(exp):
        raise TokenError("the token has no expiry (exp)")
    if (time.time() if now is None else now) >= exp:
        raise TokenError("the token has expired")
    aud = claims.get("aud")  # a string, or (RFC 7519 4.1.3) a list of them
    named = set(a for a in (aud if isinstance(aud, list) else [aud]) if isinstance(a, str))
    if audience is not None and aud != audience or audience is None and named & OWN_AUDIENCES:
        raise TokenError("the token was issued for something else")
    return claims


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer past any float
        return False


def purpose_key(secret_key: bytes, audience: str) -> bytes:
    """A key of its own for one purpose, derived from the secret (HMAC, as HKDF's extract): a
    token of another purpose fails its signature even where a team set the same secret twice."""
    return hmac.new(secret_key, audience.encode(), hashlib.sha256).digest()


def _json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64url(part))
    except (ValueError, RecursionError) as exc:  # a deeply nested part is no token either
        raise TokenError("the token's parts are not JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("the token's parts are not JSON objects")
    return value
