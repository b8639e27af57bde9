"""Google's OAuth 2.0 token endpoint, as the sandbox plays it for FCM: a service-account key made
for the process, and the JWT bearer grant checked as Google checks it (RS256 signature by that
key, issuer, audience, scope, times), answering with short-lived access tokens."""

from __future__ import annotations

import base64
import json
import secrets
import time
from functools import cache
from typing import Any
from urllib.parse import parse_qs

from sandbox.providers import Reply, Request

TOKEN_PATH = "/token"
CLIENT_EMAIL = "switchyard-sandbox@switchyard-sandbox.iam.gserviceaccount.com"
KEY_ID = "sandbox-key-1"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# The sandbox service account's key: fixed, like the sandbox's other credentials, so a sandbox in
# another process (`switchyard sandbox`) checks what this one's clients sign. Trusted nowhere else.
SANDBOX_PRIVATE_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCteo0/z/kLW/2O
uO1XcBYiR3IyssKpHoK9xuZmplEkAW/xt7IRCjaj/Nd+b6cnl2qw4oe40Y7+2f6F
hPcPdvS2tvyxl+KEQ76MUuEtbK7J/sU6oJSAc9Bg8gNTh1ESP3JG7JujxRYmwZL9
n+e27TupHGe/Qb+CcyZnxVUle0+sQDPbLY4Kd4XbxCImAZCjfnstdImiGcZ4o4WV
OsAf5SdwvF/Jl2yaHPK56M8U8grLLWYF5IlWS4aVL99ttjqbeozxqicfBIMOXbE1
J2KJpdCBlQZJvoJDPF4N/GFoC7rzCEr4M/exbS35q/kdFAwTqO2h/gkXnUnK098Q
1PRbtMLXAgMBAAECggEACne7Hy8a7XMLDToeZCjIxR+/hcygj1jedboTO/1sJvqJ
OTIm5f1SR7nhfOka0npB/1Nj8iR+9uTLhV39FGtOn9nRzJuIGQgHbusvWDDXKSwc
1YlL/KZAXCEuTzN6klnOuPXc/FhPml4S0wf7kN+munES14kNl78AAcH3/c9/grqx
l6EF6ETSY7OHCJ6IBp9KxtgnOPJJE3mX94qaDlu5qit1YxFq2Ef9rQQPDEtc4+xj
+ty3OtN/txXw099HpONr/0g0ps11fIFwEH23doab4n74xR4seOK6RV7fEtQcw+Nd
09OXK3M3PmHJY5vkblV8z6tVhON5y+i9L/Mr2Xt5lQKBgQDToT0Hh2SpMBrlAcSH
SktF1PChUetV0UdVodP4P7FezSuQd24sijcjU7an3UWVtVSbnrJ/VK2F+Bk9IYGD
zZ8UYXfKEA0m9aXRBXl/kPSSag+Is4fPIZ9tX1Ikb34j8THoEtt/KzN7SsOTDS5D
qfoqsjUc8e05pYn++hR6jGNEewKBgQDR2aMAU7RFm1IOXCqcEEEA9xdv9jrNoXVG
wvlnABlerBpWrtgLSgJclrumLM3AlPBDinbQxtJfF0Sqyk4v0WGUa0irY5HNUqE+
7rr/qpVQiPLpAtAFokvIcTiQkKOgZNfcfZxhJuBI1TrSqgRFZ3RcIAlSrNuNznFC
3UZtqW0yVQKBgEYaGgo9ajW1DqOfU0dxb7/BCriVVzxFJ7kQ8xM/nfSGSBEBzsgI
PL2CBHZUkLFHsLAgAIa3OQewqEOcrrdHTJPGuZSAfqrSIkw74QRFsw4w/dZNigYt
4A6tzZruJ72mLt7uKDFW0SXdHS2/5vxY+Npdz8Q3y1oWIMEKe/AgQt2zAoGBALBq
/xXvSMab5UgdQ9Uf9QYStKlzn8vvyOBMWc+1zZ5BoYLuSsJy3blpHyh80hztGXAu
n+S0wXcf4KKUoVah+B8Gcnljo9exd82odZ0qk4y5FT2/F5Mk9gD07lDayDS3kqHT
F/y06ilQ2brxI9YVO0WXyT6wA4Qb4iwMSoE2xo5hAoGBALgp3PXnmFbgmEpJFHeF
xtTKMTd9Mg7hOKNmeB7jhhBjOQ0GAc9RaAZWnz5l03YQFS16t20+/EHzaZKu18ft
2YmN2JeqWUkVbgsYHG0UlWoVYtriFqkltijpGFH0W5ejrzVSH5MbsnQ75yBMNAms
YIXXd7dH6dnBawgEFY8IUhWO
-----END PRIVATE KEY-----
"""


@cache
def _private_key() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(SANDBOX_PRIVATE_KEY_PEM.encode(), password=None)


def service_account_info(base_url: str, project_id: str) -> dict[str, str]:
    """The key file a Google Cloud console would give for the sandbox's service account."""
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": KEY_ID,
        "private_key": SANDBOX_PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "token_uri": f"{base_url.rstrip('/')}{TOKEN_PATH}",
    }


def _grant_error(description: str) -> Reply:
    return Reply(400, {"error": "invalid_grant", "error_description": description})


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_grant(req: Request, audience: str) -> Reply | tuple[str, int]:
    """An access token and its lifetime for a valid grant, or Google's error."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    form = parse_qs(req.body.decode(errors="replace"))
    if form.get("grant_type") != [JWT_BEARER]:
        return Reply(
            400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        )
    assertion = (form.get("assertion") or [""])[0]
    parts = assertion.split(".")
    if len(parts) != 3:
        return _grant_error(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
        )
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except ValueError:
        return _grant_error("Invalid JWT: not base64url JSON")
    if header.get("alg") != "RS256":
        return _grant_error("Invalid JWT: the algorithm must be RS256")
    try:
        _private_key().public_key().verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return _grant_error("Invalid JWT Signature.")
    if claims.get("iss") != CLIENT_EMAIL:
        return Reply(
            401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        )
    if claims.get("aud") != audience:
        return _grant_error(f"Invalid JWT: audience must be {audience}")
    if FCM_SCOPE not in str(claims.get("scope", "")).split():
        return _grant_error(f"Invalid JWT: scope must include {FCM_SCOPE}")
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int)
        or not isinstance(exp, int)
        or exp - iat > 3600
        or iat > now + 60
        or exp <= now
    ):
        return _grant_error(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
        )
    return f"ya29.sandbox-{secrets.token_urlsafe(24)}", 3599
