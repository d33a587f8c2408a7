"""JSON typed or piped in by a user, checked before anything reaches Redis.

One concept: turning untrusted bytes into a payload, or into one error that says what is wrong
and where (``line:column`` in the text, or a JSON pointer into the document). Refused:

- text that is not UTF-8 (the first bad byte is located);
- JSON syntax errors;
- nesting deeper than ``MAX_DEPTH`` (found by a linear scan before parsing, so a hostile
  document never reaches the recursive parser);
- strings or keys holding a lone UTF-16 surrogate such as ``"\\udcff"``, which JSON allows but
  no UTF-8 text can carry;
- input larger than a limit, counted while reading (``read_limited``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any

MAX_DEPTH = 100


@dataclass
class JsonInputError(Exception):
    """What is wrong with a JSON input, and where."""

    message: str
    line: int | None = None
    column: int | None = None
    pointer: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def where(self, source: str) -> str:
        """``source:line:col`` or ``source#/json/pointer`` (``source`` when neither is known)."""
        if self.line is not None:
            return f"{source}:{self.line}" + (f":{self.column}" if self.column is not None else "")
        if self.pointer is not None:
            return f"{source}#{self.pointer or '/'}"
        return source


def read_limited(stream: IO[bytes], limit: int) -> bytes:
    """All of ``stream``, refused as soon as it passes ``limit`` bytes (never read in full)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise JsonInputError(f"larger than the {limit:,} byte limit of a payload")
    return data


def parse_json(raw: bytes, first_line: int = 1) -> Any:
    """The document in ``raw``, or JsonInputError; ``first_line`` numbers lines in messages."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise JsonInputError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            line + first_line - 1,
            column,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write
    _check_depth(text, first_line)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            f"not valid JSON: {exc.msg}", exc.lineno + first_line - 1, exc.colno
        ) from None
    except RecursionError:  # pragma: no cover - _check_depth stops these first
        raise JsonInputError(f"nested deeper than {MAX_DEPTH} levels") from None
    _check_strings(value)
    return value


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, offset) + 1
    start = raw.rfind(b"\n", 0, offset) + 1
    return line, len(raw[start:offset].decode("utf-8", "replace")) + 1


def _check_depth(text: str, first_line: int) -> None:
    """JsonInputError at the first bracket nested deeper than MAX_DEPTH (strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # cannot be that deep: skip the scan
    depth = 0
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, index) + 1
                column = index - (text.rfind("\n", 0, index) + 1) + 1
                raise JsonInputError(
                    f"nested deeper than {MAX_DEPTH} levels", line + first_line - 1, column
                )
        elif char in "]}":
            depth -= 1


def _check_strings(value: Any) -> None:
    """JsonInputError (with a JSON pointer) at the first string or key UTF-8 cannot encode."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        pointer, item = stack.pop()
        if isinstance(item, str):
            _encodable(item, pointer)
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{pointer}/{_escape(key)}"
                _encodable(key, path, key=True)
                stack.append((path, child))
        elif isinstance(item, list):
            stack.extend((f"{pointer}/{i}", child) for i, child in enumerate(item))


def _encodable(text: str, pointer: str, key: bool = False) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        what = "key" if key else "string"
        bad = ord(text[exc.start])
        raise JsonInputError(
            f"not encodable as UTF-8: the {what} holds a lone surrogate \\u{bad:04x}",
            pointer=pointer,
        ) from None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
