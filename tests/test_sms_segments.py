"""SMS segment counting, against the GSM 03.38 and UCS-2 limits carriers bill by."""

from __future__ import annotations

import pytest

from activations.channels.sms_segments import encoding, segments


@pytest.mark.parametrize(
    "text, expected_encoding, expected_segments",
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),  # 2 x 153
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets: 160
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # the escape pair is not split: 152+2 > 153
        ("a" * 70 + "é", "GSM-7", 1),  # é is in the GSM alphabet
        ("ç" * 70, "UCS-2", 1),  # ç (lower case) is not
        ("ç" * 71, "UCS-2", 2),
        ("ç" * 134, "UCS-2", 2),  # 2 x 67
        ("😀" * 35, "UCS-2", 1),  # a surrogate pair is two code units: 70
        ("😀" * 36, "UCS-2", 2),
        ("a" * 66 + "😀" + "a" * 10, "UCS-2", 2),
    ],
)
def test_segments(text: str, expected_encoding: str, expected_segments: int) -> None:
    assert (encoding(text), segments(text)) == (expected_encoding, expected_segments)
