"""OAuth 2.0 access tokens for a Google service account (what FCM HTTP v1 takes): a JWT signed
with the account's private key (RS256) exchanged at its token endpoint (the JWT bearer grant,
RFC 7523), cached until shortly before it expires and minted again then, or when FCM refuses it.

https://developers.google.com/identity/protocols/oauth2/service-account#httprest
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from activations.channels.core import NotSent, Retryable

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME_SECONDS = 3600  # the most Google grants
REFRESH_MARGIN_SECONDS = 300  # minted again this long before expiry


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class ServiceAccountError(ValueError):
    """The service-account key file is unreadable or not a service account's."""


@dataclass
class ServiceAccountTokens:
    client_email: str
    private_key_pem: str
    token_uri: str
    private_key_id: str | None = None
    project_id: str | None = None
    scope: str = FCM_SCOPE
    clock: Callable[[], float] = time.time
    _token: str | None = field(default=None, repr=False)
    _expires_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    minted: int = 0  # tokens minted so far

    @classmethod
    def from_info(
        cls, info: Mapping[str, Any], token_uri: str | None = None
    ) -> ServiceAccountTokens:
        missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
        if info.get("type") != "service_account" or missing:
            raise ServiceAccountError(
                "not a Google service-account key (JSON with type 'service_account', "
                "client_email, private_key, token_uri)"
                + (f": missing {', '.join(missing)}" if missing else "")
            )
        return cls(
            client_email=info["client_email"],
            private_key_pem=info["private_key"],
            token_uri=token_uri or info["token_uri"],
            private_key_id=info.get("private_key_id"),
            project_id=info.get("project_id"),
        )

    @classmethod
    def from_file(cls, path: Path, token_uri: str | None = None) -> ServiceAccountTokens:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ServiceAccountError(f"{path}: {exc}") from exc
        if not isinstance(info, dict):
            raise ServiceAccountError(f"{path}: not a JSON object")
        try:
            return cls.from_info(info, token_uri)
        except ServiceAccountError as exc:
            raise ServiceAccountError(f"{path}: {exc}") from exc

    def assertion(self, now: float) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        header = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        claims = {
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_uri,
            "iat": int(now),
            "exp": int(now) + LIFETIME_SECONDS,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ServiceAccountError("the service account's private_key is not an RSA key")
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def token(self, http: httpx.Client) -> str:
        """A current access token: the cached one, or one minted now. Raises Retryable when the
        token endpoint cannot be reached or answers 5xx/429 (no message went), NotSent when it
        refuses the key (a setting to fix)."""
        with self._lock:
            now = self.clock()
            if self._token is not None and now < self._expires_at - REFRESH_MARGIN_SECONDS:
                return self._token
            try:
                response = http.post(
                    self.token_uri,
                    data={"grant_type": JWT_BEARER, "assertion": self.assertion(now)},
                )
            except httpx.TransportError as exc:
                raise Retryable(f"access token: could not reach {self.token_uri}: {exc!r}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                raise Retryable(f"access token: HTTP {response.status_code} from {self.token_uri}")
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            if response.status_code != 200 or not body.get("access_token"):
                raise NotSent(
                    f"access token refused by {self.token_uri}: HTTP {response.status_code} "
                    f"{body.get('error', '')} {body.get('error_description', '')}".rstrip()
                    + " (check SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE)"
                )
            self._token = str(body["access_token"])
            self._expires_at = now + float(body.get("expires_in", LIFETIME_SECONDS))
            self.minted += 1
            return self._token

    def forget(self, token: str) -> None:
        """The provider refused `token` (revoked, expired early): the next call mints anew."""
        with self._lock:
            if self._token == token:
                self._token = None
