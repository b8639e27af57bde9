"""One-click unsubscribe headers for marketing email (RFC 8058), whichever way email goes out."""

from __future__ import annotations


def list_unsubscribe_headers(url: str | None) -> dict[str, str]:
    """The headers for a message's signed one-click link; None (a transactional message, or no
    link secret set): none. Gmail and Yahoo require them of bulk senders."""
    if not url:
        return {}
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
