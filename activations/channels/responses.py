"""Reading the providers' error bodies into one short reason for the ledger."""

from __future__ import annotations

import httpx


def failure_reason(response: httpx.Response) -> str:
    """'HTTP <status>: <provider message>' from SendGrid, Twilio or Google error shapes."""
    detail = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:  # SendGrid
            detail = "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict))
        elif "code" in body and "message" in body:  # Twilio
            detail = f"{body['code']} {body['message']}"
        elif isinstance(body.get("error"), dict):  # Google APIs (FCM)
            err = body["error"]
            detail = f"{err.get('status', '')} {err.get('message', '')}".strip()
    if not detail:
        detail = response.text[:200]
    return f"HTTP {response.status_code}: {detail}"
