"""One-click unsubscribe headers for marketing email (RFC 8058), whichever way email goes out."""

from __future__ import annotations


def list_unsubscribe_headers(url_template: str | None, send_key: str) -> dict[str, str]:
    """`url_template` with `{send_key}` filled in; None: no headers (mailbox providers ask bulk
    senders for them)."""
    if not url_template:
        return {}
    url = url_template.replace("{send_key}", send_key)
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
