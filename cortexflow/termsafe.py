"""Text from outside (job ids, names, errors, log lines) made safe to show on a terminal.

A job id or a handler's error may hold ESC, BEL or other control characters: written raw, they
retitle the terminal (``ESC ] 0 ; ... BEL``), clear it (``ESC [ 2 J``) or hide what follows.
``escape_controls`` spells every such character out (``\\x1b``), keeping newlines and tabs, so
the text is shown instead of obeyed. ``want_color``: whether to colour what goes to a stream.
Depends on nothing else in cortexflow.
"""

from __future__ import annotations

import os
import re
from typing import TextIO

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, and the bidirectional
# overrides that can make text read backwards (Trojan Source).
UNSAFE_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{UNSAFE_CHARS}]")


def _spell(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\u202e``).

    ``keep_newlines=False`` escapes ``\\n`` and ``\\r`` too (for one-line cells and log lines).
    """
    out = _UNSAFE.sub(_spell, text) if _UNSAFE.search(text) else text
    if not keep_newlines:
        out = out.replace("\n", "\\n").replace("\r", "\\r")
    return out


def want_color(no_color_flag: bool, stream: TextIO) -> bool:
    """Colour only on a terminal, and never with --no-color or NO_COLOR set:
    the one rule for every command that colours what it writes."""
    if no_color_flag or os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # not a file, or a closed one
        return False
