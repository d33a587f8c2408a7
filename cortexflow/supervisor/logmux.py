"""Children's output, one line at a time, prefixed `HH:MM:SS queue.N | line` or as JSON.

Bytes arrive in chunks of any size (a 1 MB line, half a line, ten lines at once);
``LineSplitter`` turns them into whole lines and ``LogSink`` renders and writes them.

In JSON (cortexflow/logs.py has the record's fields) a child's line that is a JSON object (a
worker's log record) passes through, given its queue, replica and pid if it lacks them; any
other line (a handler's print(), a traceback the interpreter wrote) becomes the ``message``
of an object with the child's queue, replica, pid and ``stream``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, TextIO

from cortexflow.logs import LogFormat, dumps, iso_utc
from cortexflow.termsafe import escape_controls

__all__ = [
    "LineSplitter",
    "LogFormat",
    "LogSink",
    "decode_line",
    "format_event",
    "format_json",
    "format_text",
    "route_line",
]

# A line longer than this is written in pieces of this size (memory stays bounded).
MAX_LINE = 4 * 1024 * 1024
SUPERVISOR_NAME = "supervisor"

# Foreground colours for the prefixes, as honcho does; red is kept for the supervisor.
_PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_SUPERVISOR_COLOR = "31"
_RESET = "\x1b[0m"


class LineSplitter:
    """Accumulate chunks of bytes, hand back complete lines (without the newline)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        lines: list[bytes] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            lines.append(bytes(self._buf[start:nl]))
            start = nl + 1
            self._scanned = start
        while len(self._buf) - start >= self._max_line:
            lines.append(bytes(self._buf[start : start + self._max_line]))
            start += self._max_line
        del self._buf[:start]
        self._scanned = len(self._buf)
        return lines

    def flush(self) -> list[bytes]:
        """What is left at end of stream (a last line without a newline)."""
        rest, self._buf = bytes(self._buf), bytearray()
        self._scanned = 0
        return [rest] if rest else []


def decode_line(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def clock(ts: float) -> str:
    """Local wall-clock time ``HH:MM:SS`` of an epoch timestamp."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def format_text(ts: float, name: str, width: int, line: str, color: str | None = None) -> str:
    """``12:00:01 notifications.0 | line``, the name padded to ``width``."""
    line = escape_controls(line, keep_newlines=False)  # a child's ESC never reaches the terminal
    prefix = f"{clock(ts)} {name.ljust(width)} |"
    if color:
        prefix = f"\x1b[{color}m{prefix}{_RESET}"
    return f"{prefix} {line}" if line else prefix


def format_json(
    ts: float, queue: str, replica: int | None, pid: int | None, stream: str, line: str
) -> str:
    """A child's line as one JSON object (see the module doc)."""
    if line.startswith("{"):
        record = _object(line)
        if record is not None:
            if "queue" in record and "replica" in record and "pid" in record:
                return line  # a worker's own record: already one object on one line
            record.setdefault("queue", queue)
            record.setdefault("replica", replica)
            record.setdefault("pid", pid)
            return dumps(record)
    return dumps(
        {
            "ts": iso_utc(ts),
            "pid": pid,
            "queue": queue,
            "replica": replica,
            "stream": stream,
            "message": line,
        }
    )


def _object(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def route_line(
    process: str, queues: tuple[str, ...], line: str, fmt: LogFormat
) -> list[tuple[str, str]]:
    """Whose line this is, and the text to show, for a child running ``queues``.

    A process of one queue: all its lines are that queue's. A shared process writes its log
    records as JSON (`up` asks it to), each naming its queue: the record goes under that queue,
    passed on as it is in JSON, or rendered ``LEVEL logger: message`` (and its traceback's
    lines) in text. Any other line (a handler's print()) goes under the process's name."""
    if len(queues) <= 1:
        return [(queues[0] if queues else process, line)]
    record = _object(line) if line.startswith("{") else None
    if record is None:
        return [(process, line)]
    queue = record.get("queue")
    owner = queue if isinstance(queue, str) and queue in queues else process
    if fmt == "json":
        return [(owner, line)]
    text = f"{record.get('level', 'INFO')} {record.get('logger', '')}: {record.get('message', '')}"
    extra = str(record["exc"]).splitlines() if record.get("exc") else []
    return [(owner, text), *((owner, more) for more in extra)]


def format_event(ts: float, line: str) -> str:
    """One line of the supervisor's own, as the record its logger would write."""
    return dumps(
        {
            "ts": iso_utc(ts),
            "level": "INFO",
            "logger": "cortexflow.supervisor",
            "pid": os.getpid(),
            "message": line,
        }
    )


@dataclass
class LogSink:
    """Where `up` writes: children's lines to ``out``, the supervisor's own to ``err``."""

    out: TextIO
    err: TextIO
    fmt: LogFormat = "text"
    color: bool = False
    width: int = len(SUPERVISOR_NAME)

    def fit(self, names: list[str]) -> None:
        """Pad prefixes to the longest name seen so far (they never shrink: columns stay put)."""
        self.width = max([self.width, *(len(n) for n in names)])

    def child_line(
        self,
        queue: str,
        replica: int,
        pid: int | None,
        stream: str,
        line: str,
        color_index: int = 0,
        ts: float | None = None,
    ) -> None:
        ts = time.time() if ts is None else ts
        if self.fmt == "json":
            text = format_json(ts, queue, replica, pid, stream, line)
        else:
            color = _PALETTE[color_index % len(_PALETTE)] if self.color else None
            text = format_text(ts, f"{queue}.{replica}", self.width, line, color)
        self._write(self.out, text)

    def event(self, message: str, ts: float | None = None) -> None:
        """One of the supervisor's own messages (each line of it prefixed alike)."""
        ts = time.time() if ts is None else ts
        for line in message.splitlines() or [""]:
            if self.fmt == "json":
                text = format_event(ts, line)
            else:
                color = _SUPERVISOR_COLOR if self.color else None
                text = format_text(ts, SUPERVISOR_NAME, self.width, line, color)
            self._write(self.err, text)

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        try:
            stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:
            # Whoever read our output went away; the children must still be supervised.
            pass
