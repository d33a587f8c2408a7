"""Problems found in queues.yaml, as data, and their three renderings (text, JSON, GitHub).

Every stage of the loader returns ``Diagnostic`` objects instead of raising, so `validate`
reports every problem at once and `up` refuses an invalid file with the very same lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]

# Codes whose problem is the file itself (missing, unreadable): exit 2 like a usage error.
FILE_CODES = frozenset({"file.missing", "file.unreadable"})


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where (file, 1-based line and column, dotted path), what, and a hint."""

    file: str
    line: int | None
    column: int | None
    severity: Severity
    code: str
    path: str
    message: str
    hint: str | None = None

    @property
    def sort_key(self) -> tuple[int, int, str, str]:
        return (self.line or 0, self.column or 0, self.path, self.code)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position, duplicates (same place, code and message) dropped."""
    unique = {(d.line, d.column, d.code, d.path, d.message): d for d in diagnostics}
    return sorted(unique.values(), key=lambda d: d.sort_key)


def errors_of(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]


def exit_code(diagnostics: Sequence[Diagnostic]) -> int:
    """0 valid, 2 when the file itself is missing or unreadable, 1 for any other error."""
    errors = errors_of(diagnostics)
    if any(d.code in FILE_CODES for d in errors):
        return 2
    return 1 if errors else 0


def summary(file: str, diagnostics: Sequence[Diagnostic], queue_count: int | None = None) -> str:
    n_err = len(errors_of(diagnostics))
    n_warn = len(diagnostics) - n_err
    if n_err == 0:
        queues = f": {queue_count} queue{'s' if queue_count != 1 else ''}" if queue_count else ""
        warned = f" ({n_warn} warning{'s' if n_warn != 1 else ''})" if n_warn else ""
        return f"{file} is valid{queues}{warned}"
    parts = [f"{n_err} error{'s' if n_err != 1 else ''}"]
    if n_warn:
        parts.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}")
    return f"{', '.join(parts)} in {file}"


def format_line(d: Diagnostic) -> str:
    """``queues.yaml:14:18: error[schema.type] queues.x.concurrency: expected ...``"""
    where = d.file
    if d.line is not None:
        where += f":{d.line}:{d.column or 1}"
    subject = f"{d.path}: {d.message}" if d.path else d.message
    text = f"{where}: {d.severity}[{d.code}] {subject}"
    if d.hint:
        text += f"\n  hint: {d.hint}"
    return text


def render_text(diagnostics: Sequence[Diagnostic], summary_line: str) -> str:
    lines = [format_line(d) for d in diagnostics]
    lines.append(summary_line)
    return "\n".join(lines)


def render_json(diagnostics: Sequence[Diagnostic], summary_line: str) -> str:
    doc: dict[str, Any] = {
        "valid": not errors_of(diagnostics),
        "diagnostics": [asdict(d) for d in diagnostics],
        "summary": summary_line,
    }
    return json.dumps(doc, indent=2)


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic], summary_line: str) -> str:
    """GitHub Actions workflow commands: one ``::error file=…,line=…,col=…::message`` each."""
    lines = []
    for d in diagnostics:
        props = [f"file={_gh_prop(d.file)}"]
        if d.line is not None:
            props.append(f"line={d.line}")
            props.append(f"col={d.column or 1}")
        props.append(f"title={_gh_prop(d.code)}")
        message = f"{d.path}: {d.message}" if d.path else d.message
        if d.hint:
            message += f"\nhint: {d.hint}"
        lines.append(f"::{d.severity} {','.join(props)}::{_gh_data(message)}")
    lines.append(summary_line)
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
