"""Per-user tokens for the inbox endpoint: JWTs (RFC 7519) signed with HMAC-SHA256 under the
inbox secret, `sub` the user id the app knows the person by, `exp` required, no `aud`.

A team's backend mints them (any JWT library will do, or `switchyard inbox token USER_ID`) and
hands each signed-in user theirs; the endpoint takes nothing else, so one user never reads
another's inbox. A signed link from a message (which names an audience) is never one of these."""

from __future__ import annotations

import time

from switchyard import signed_tokens
from switchyard.signed_tokens import TokenError, b64url

__all__ = ["TokenError", "b64url", "check_secret", "issue", "verify"]

SECRET_VARIABLE = "SWITCHYARD_INBOX_SECRET"
DEFAULT_LIFETIME_SECONDS = 3600


def check_secret(secret: str) -> bytes:
    return signed_tokens.check_secret(secret, SECRET_VARIABLE)


def issue(
    secret: str, user_id: str, now: float | None = None, lifetime: int = DEFAULT_LIFETIME_SECONDS
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {"sub": user_id, "iat": issued, "exp": issued + lifetime}
    return signed_tokens.issue(check_secret(secret), claims)


def verify(secret: str, token: str, now: float | None = None) -> str:
    """The user id the token was issued for; TokenError when it is forged, altered, of another
    algorithm (`none` included), expired, or for another audience."""
    sub = signed_tokens.verify(check_secret(secret), token, None, now).get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("the token names no user (sub)")
    return sub
