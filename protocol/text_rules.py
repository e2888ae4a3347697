"""Checks on text that the document and attachment rules share: how a bad value is
quoted in a refusal, which characters never belong on one line, and which strings
are not Unicode text at all."""

from __future__ import annotations

import re

QUOTE_LIMIT = 40
# Never in a one-line field or a file name: control characters (C0, DEL, C1), the
# Unicode line/paragraph separators, and the bidirectional embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069), which make text show in another order than
# it is stored: "报告\u202efdp.exe" shows as 报告exe.pdf. The bidirectional marks
# (U+200E, U+200F, U+061C) stay allowed: Uyghur and other right-to-left text needs them.
# Lone surrogates: never in any text (they cannot be UTF-8).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SURROGATE = re.compile("[\ud800-\udfff]")


def quote(value: object) -> str:
    """A short rendering of a bad value for error details."""
    if isinstance(value, (str, bytes)) and len(value) > QUOTE_LIMIT:
        value = value[:QUOTE_LIMIT]  # never render megabytes only to cut them
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not escape as anything but a refusal
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def is_unicode_text(value: str) -> bool:
    """No lone surrogates: exactly the strings UTF-8 can encode (C speed, unlike a
    regex scan, which matters for a body of thousands of characters)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
