"""Per-user tokens for the inbox endpoint: JWTs (RFC 7519) signed with HMAC-SHA256 under the
inbox secret, `sub` the user id the app knows the person by, `exp` required.

A team's backend mints them (any JWT library will do, or `switchyard inbox token USER_ID`) and
hands each signed-in user theirs; the endpoint takes nothing else, so one user never reads
another's inbox."""

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
DEFAULT_LIFETIME_SECONDS = 3600


class TokenError(ValueError):
    """The token is not one this inbox issued, or no longer good: the answer is 401."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("the token is not base64url") from exc


def check_secret(secret: str) -> bytes:
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"SWITCHYARD_INBOX_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256's key "
            "length); make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return key


def _sign(key: bytes, signing_input: str) -> str:
    return _b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def issue(
    secret: str, user_id: str, now: float | None = None, lifetime: int = DEFAULT_LIFETIME_SECONDS
) -> str:
    issued = int(time.time() if now is None else now)
    header = {"alg": ALGORITHM, "typ": "JWT"}
    claims = {"sub": user_id, "iat": issued, "exp": issued + lifetime}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{_sign(check_secret(secret), signing_input)}"


def verify(secret: str, token: str, now: float | None = None) -> str:
    """The user id the token was issued for; TokenError when it is forged, altered, of another
    algorithm (`none` included) or expired."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT (three dot-separated parts)")
    header = _json(parts[0])
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"the token's algorithm must be {ALGORITHM}")
    expected = _sign(check_secret(secret), f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "replace")):
        raise TokenError("the token's signature does not match")
    claims = _json(parts[1])
    exp, sub = claims.get("exp"), claims.get("sub")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
        raise TokenError("the token has no expiry (exp)")
    if (time.time() if now is None else now) >= exp:
        raise TokenError("the token has expired")
    if not isinstance(sub, str) or not sub:
        raise TokenError("the token names no user (sub)")
    return sub


def _json(part: str) -> Mapping[str, Any]:
    try:
        value = json.loads(_unb64url(part))
    except (ValueError, RecursionError) as exc:  # a deeply nested part is no token either
        raise TokenError("the token's parts are not JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("the token's parts are not JSON objects")
    return value
