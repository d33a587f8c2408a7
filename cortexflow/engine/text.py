"""Text the engine stores: valid UTF-8 (the scripts' JSON decoder refuses anything else) and
bounded in bytes, with a marker where something was cut.

Python strings may hold lone surrogates (a file name read with ``surrogateescape``, subprocess
output): Redis would get bytes that are not UTF-8, and Lua's cjson refuses ``\\udcff`` escapes.
Every text the worker sends goes through one of these functions first.
"""

from __future__ import annotations

import re

# Limits in bytes of UTF-8 (payloads: engine/payload.py MAX_PAYLOAD_BYTES).
MAX_RESULT_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 16 * 1024
MAX_STACKTRACE_BYTES = 64 * 1024
MAX_LOG_LINE_BYTES = 16 * 1024
MAX_NAME_BYTES = 1024

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udcff`` escapes (visible, and valid UTF-8)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def replace_surrogates(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (for JSON texts, where an escape would
    decode back to the same lone surrogate)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def cut_marker(size: int, limit: int) -> str:
    return f"…[cut: {size:,} bytes, limit {limit:,}]"


def bounded(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """Valid UTF-8 text of at most ``limit`` bytes: longer text is cut, and a marker saying so
    ends it (``keep_tail``: the marker sits in the middle and the end is kept, for stack traces,
    whose last lines say the most)."""
    text = valid_utf8(text)
    if len(text) * 4 <= limit:  # cheap: no encoding needed for short text
        return text
    raw = text.encode("utf-8")
    size = len(raw)
    if size <= limit:
        return text
    marker = cut_marker(size, limit)
    room = max(limit - len(marker.encode("utf-8")) - 2, 0)
    if keep_tail:
        head = raw[: room // 2].decode("utf-8", "ignore")
        tail = raw[size - (room - room // 2) :].decode("utf-8", "ignore")
        return f"{head}\n{marker}\n{tail}"
    return raw[:room].decode("utf-8", "ignore") + marker
