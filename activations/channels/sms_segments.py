"""How many SMS segments a text takes (what carriers bill): GSM-7 when every character is in the
GSM 03.38 alphabet (its extension table's characters take two septets), else UCS-2.

One segment holds 160 GSM-7 septets or 70 UCS-2 code units; a longer text is split into parts of
153 septets or 67 code units (the rest carries the concatenation header). A GSM-7 escape pair is
never split across parts, nor a UTF-16 surrogate pair."""

from __future__ import annotations

from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def encoding(text: str) -> Literal["GSM-7", "UCS-2"]:
    ok = all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)
    return "GSM-7" if ok else "UCS-2"


def segments(text: str) -> int:
    """The number of segments `text` is sent as (at least 1)."""
    if encoding(text) == "GSM-7":
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]  # UTF-16 code units
        single, part = 70, 67
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for width in units:  # a character never straddles two parts
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return count
