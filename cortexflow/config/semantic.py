"""Checks a JSON Schema cannot express (docs/config.md): durations, handlers, payload schemas,
dead letters, backoff bounds, shared processes (groups.py), group keys (groupcheck.py); on the
raw data even when the schema found problems elsewhere, so one `validate` lists everything."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from cortexflow.config.diagnostics import Diagnostic
from cortexflow.config.groupcheck import check_groups
from cortexflow.config.groups import check_process_groups
from cortexflow.config.importer import ImportFromStringError, resolve_handler
from cortexflow.config.schema import HANDLER_PATTERN
from cortexflow.config.tasks_check import check_tasks
from cortexflow.config.yamlmarks import Document, PathT, dotted
from cortexflow.durations import DURATION_PATTERN, DurationError, parse_duration
from cortexflow.ticks import (
    MIN_EVERY_MS,
    RuleError,
    normalize_cron,
    parse_start_at,
    zone,
)

_DURATION = re.compile(DURATION_PATTERN)
_HANDLER = re.compile(HANDLER_PATTERN)
# Durations that must be longer than zero, by their key.
_POSITIVE = frozenset({"timeout", "lease", "window", "duration"})


@dataclass
class SemanticResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    payload_docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by resolved path


class _Checker:
    def __init__(self, doc: Document, file: str, base_dir: Path) -> None:
        self.doc = doc
        self.file = file
        self.base_dir = base_dir
        self.result = SemanticResult()

    def report(
        self, path: PathT, code: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        mark = self.doc.mark(path, key=key)
        self.result.diagnostics.append(
            Diagnostic(
                self.file, mark.line, mark.column, "error", code, dotted(path), message, hint
            )
        )


def check_semantics(
    doc: Document, schema: Mapping[str, Any], file: str, base_dir: Path, *, check_imports: bool
) -> SemanticResult:
    checker = _Checker(doc, file, base_dir)
    data = doc.data if isinstance(doc.data, dict) else {}
    _check_durations(checker, data, schema, ())
    queues = data.get("queues") if isinstance(data.get("queues"), dict) else {}
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    assert isinstance(queues, dict) and isinstance(defaults, dict)
    imported: dict[str, ImportFromStringError | None] = {}
    imported_brokers: dict[str, Any] = {}
    for name, queue in queues.items():
        if not isinstance(queue, dict):
            continue
        base: PathT = ("queues", name)
        handler = queue.get("handler")
        if (
            check_imports
            and isinstance(handler, str)
            and _HANDLER.match(handler)
            and not doc.is_broken((*base, "handler"))
        ):
            if handler not in imported:
                imported[handler] = _try_import(handler, base_dir)
            problem = imported[handler]
            if problem is not None:
                checker.report(
                    (*base, "handler"), f"handler.{problem.kind}", str(problem), problem.hint
                )
        _check_tasks(checker, name, queue, queues, imported_brokers if check_imports else None)
        _check_backoff(checker, name, queue, defaults)
        _check_dead_letter(checker, name, queue, defaults, queues)
    for path, value in _payload_schema_refs(queues, defaults):
        if not doc.is_broken(path):
            _check_payload_schema(checker, path, value)
    check_groups(checker.report, doc, queues, defaults, base_dir, checker.result.payload_docs)
    _check_dead_letter_cycles(checker, queues, defaults)
    check_process_groups(checker.report, queues, defaults)
    schedules = data.get("schedules")
    if isinstance(schedules, dict):
        for name, schedule in schedules.items():
            if isinstance(schedule, dict) and not doc.is_broken(("schedules", name)):
                _check_schedule(checker, name, schedule, queues, defaults)
    return checker.result


def _check_tasks(
    c: _Checker,
    name: str,
    queue: dict[str, Any],
    queues: dict[str, Any],
    brokers: dict[str, Any] | None,
) -> None:
    """A queue's ``tasks:`` (config/tasks_check.py); ``brokers`` None: import nothing."""
    for where, code, message, hint in check_tasks(name, queue, queues, c.base_dir, brokers):
        path: PathT = ("queues", name, *where)
        if not c.doc.is_broken(path):
            c.report(path, code, message, hint)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _try_import(handler: str, base_dir: Path) -> ImportFromStringError | None:
    try:
        resolve_handler(handler, search_path=base_dir)
    except ImportFromStringError as exc:
        return exc
    return None


def _check_durations(c: _Checker, value: Any, schema: Mapping[str, Any], path: PathT) -> None:
    """Walk data and schema together; parse every string the schema calls a duration."""
    if (
        schema.get("pattern") == DURATION_PATTERN
        and isinstance(value, str)
        and _DURATION.match(value)
    ):
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            c.report(path, "duration.invalid", str(exc), 'e.g. "1h30m", largest unit first')
            return
        if seconds <= 0 and path and path[-1] in _POSITIVE:
            c.report(path, "duration.invalid", f"{path[-1]} must be longer than 0, got {_q(value)}")
        return
    if not isinstance(value, dict):
        return
    for branch in schema.get("oneOf", ()):
        if branch.get("type") == "object":
            _check_durations(c, value, branch, path)
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for k, v in value.items():
        sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
        if sub is not None:
            _check_durations(c, v, sub, (*path, k))


def _seconds(value: Any) -> float | None:
    if isinstance(value, str) and _DURATION.match(value):
        try:
            return parse_duration(value)
        except DurationError:
            return None
    return None


def _effective(
    queue: dict[str, Any], defaults: dict[str, Any], *keys: str
) -> tuple[Any, PathT | None]:
    """A nested setting as the queue sees it (its own, else defaults'), and where it is written."""
    for source, prefix in ((queue, None), (defaults, ("defaults",))):
        node: Any = source
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        if node is not None:
            return node, (prefix + keys if prefix else None)
    return None, None


def _check_backoff(c: _Checker, name: str, queue: dict[str, Any], defaults: dict[str, Any]) -> None:
    delay_raw, _ = _effective(queue, defaults, "backoff", "delay")
    max_raw, max_where = _effective(queue, defaults, "backoff", "max")
    delay = _seconds(delay_raw) if delay_raw is not None else 1.0
    cap = _seconds(max_raw) if max_raw is not None else 600.0
    if delay is None or cap is None or cap >= delay:
        return
    if max_where is None and max_raw is not None:
        where: PathT = ("queues", name, "backoff", "max")
    elif max_where is not None:
        where = max_where
    else:
        where = (
            ("queues", name, "backoff", "delay")
            if isinstance(queue.get("backoff"), dict)
            else ("defaults", "backoff", "delay")
        )
    c.report(
        where,
        "backoff.max",
        f"backoff.max ({max_raw or '10m'}) is shorter than backoff.delay ({delay_raw})"
        + ("" if where[0] == "defaults" else f" for queue {_q(name)}"),
        "make max at least as long as delay",
    )


def _dead_letter_of(
    name: str, queue: dict[str, Any], defaults: dict[str, Any]
) -> tuple[Any, PathT]:
    if "dead_letter" in queue:
        return queue["dead_letter"], ("queues", name, "dead_letter")
    target = defaults.get("dead_letter")
    # A dead-letter queue does not dead-letter into itself through defaults.
    return (None if target == name else target), ("defaults", "dead_letter")


def _check_dead_letter(
    c: _Checker, name: str, queue: dict[str, Any], defaults: dict[str, Any], queues: dict[str, Any]
) -> None:
    target, where = _dead_letter_of(name, queue, defaults)
    if not isinstance(target, str) or c.doc.is_broken(where):
        return
    if target == name:
        c.report(
            where,
            "dead-letter.self",
            f"queue {_q(name)} cannot be its own dead_letter",
            "name another queue, or remove dead_letter",
        )
    elif target not in queues:
        close = difflib.get_close_matches(target, list(queues), n=1)
        hint = (
            f'did you mean "{close[0]}"?'
            if close
            else f"declare a queue named {_q(target)} in queues:"
        )
        c.report(
            where,
            "dead-letter.unknown",
            f"dead_letter names {_q(target)}, which is not a queue declared here "
            f"(queues: {', '.join(queues)})",
            hint,
        )


def _check_dead_letter_cycles(
    c: _Checker, queues: dict[str, Any], defaults: dict[str, Any]
) -> None:
    edges: dict[str, str] = {}
    for name, queue in queues.items():
        if isinstance(queue, dict):
            target, _ = _dead_letter_of(name, queue, defaults)
            if isinstance(target, str) and target in queues and target != name:
                edges[name] = target
    reported: set[frozenset[str]] = set()
    for start, first in edges.items():
        seen = [start]
        node = first
        while node in edges and node not in seen:
            seen.append(node)
            node = edges[node]
        if node == start and frozenset(seen) not in reported:
            reported.add(frozenset(seen))
            loop = " -> ".join([*seen, start])
            _, where = _dead_letter_of(start, queues[start], defaults)
            c.report(
                where,
                "dead-letter.cycle",
                f"dead_letter queues form a loop: {loop}",
                "a job that fails for good would circle forever; end the chain at a queue "
                "without dead_letter",
            )


def _payload_schema_refs(
    queues: dict[str, Any], defaults: dict[str, Any]
) -> Iterator[tuple[PathT, str]]:
    if isinstance(defaults.get("payload_schema"), str):
        yield ("defaults", "payload_schema"), defaults["payload_schema"]
    for name, queue in queues.items():
        if isinstance(queue, dict) and isinstance(queue.get("payload_schema"), str):
            yield ("queues", name, "payload_schema"), queue["payload_schema"]


def _check_payload_schema(c: _Checker, path: PathT, ref: str) -> None:
    target = (c.base_dir / ref).resolve()
    key = str(target)
    if key in c.result.payload_docs:
        return
    if not target.is_file():
        what = "is a folder, not a file" if target.is_dir() else "does not exist"
        c.report(
            path,
            "payload-schema.missing",
            f"payload schema {_q(ref)} {what} (looked for {target})",
            "payload_schema is relative to the folder of queues.yaml",
        )
        return
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        c.report(
            path,
            "payload-schema.invalid-json",
            f"payload schema {_q(ref)} is not JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
        )
        return
    except (OSError, UnicodeDecodeError) as exc:
        c.report(path, "payload-schema.missing", f"payload schema {_q(ref)} cannot be read: {exc}")
        return
    if not isinstance(doc, dict | bool):
        c.report(
            path,
            "payload-schema.invalid",
            f"payload schema {_q(ref)} is a JSON {type(doc).__name__}, not a JSON Schema object",
        )
        return
    if isinstance(doc, bool):
        doc = {} if doc else {"not": {}}
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft7Validator)
    try:
        cls.check_schema(doc)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        c.report(
            path,
            "payload-schema.invalid",
            f"payload schema {_q(ref)} is not a valid JSON Schema"
            f"{f' at /{where}' if where else ''}: {exc.message}",
        )
        return
    except Exception as exc:  # e.g. a regex that does not compile
        c.report(
            path,
            "payload-schema.invalid",
            f"payload schema {_q(ref)} is not a valid JSON Schema: {exc}",
        )
        return
    c.result.payload_docs[key] = doc


def _check_schedule(
    c: _Checker,
    name: str,
    schedule: dict[str, Any],
    queues: dict[str, Any],
    defaults: dict[str, Any],
) -> None:
    """One diagnostic per problem of a ``schedules:`` entry, at the value that has it."""
    base: PathT = ("schedules", name)
    _check_schedule_rule(c, name, base, schedule)
    queue = schedule.get("queue")
    if not isinstance(queue, str) or c.doc.is_broken((*base, "queue")):
        return
    if queue not in queues:
        close = difflib.get_close_matches(queue, list(queues), n=1)
        c.report(
            (*base, "queue"),
            "schedule.queue",
            f"schedule {_q(name)} names queue {_q(queue)}, which is not declared here "
            f"(queues: {', '.join(queues)})",
            f'did you mean "{close[0]}"?' if close else "declare it under queues:",
        )
        return
    _check_schedule_data(c, base, schedule, queues[queue], defaults)


def _check_schedule_rule(c: _Checker, name: str, base: PathT, schedule: dict[str, Any]) -> None:
    """cron or every (one of them), a valid rule, timezone and start_at, every >= 1 s."""
    if "cron" in schedule and "every" in schedule:
        c.report(
            (*base, "every"),
            "schedule.rule",
            f"schedule {_q(name)} sets both cron and every",
            "keep one: cron for times of day, every for an interval",
            key=True,
        )
    elif "cron" not in schedule and "every" not in schedule:
        c.report(
            base,
            "schedule.rule",
            f"schedule {_q(name)} has neither cron nor every",
            'add cron: "0 6 * * *" or every: 5m',
            key=True,
        )
    checks = (
        ("cron", "schedule.cron", normalize_cron),
        ("timezone", "schedule.timezone", zone),
        ("start_at", "schedule.start-at", parse_start_at),
    )
    for key, code, check in checks:
        value = schedule.get(key)
        if isinstance(value, str) and not c.doc.is_broken((*base, key)):
            try:
                check(value)
            except RuleError as exc:
                c.report(
                    (*base, key), code, str(exc), _zone_hint(value) if key == "timezone" else None
                )
    every = _seconds(schedule.get("every"))
    if every is not None and round(every * 1000) < MIN_EVERY_MS:
        c.report(
            (*base, "every"),
            "schedule.every",
            f"every must be at least 1s, got {_q(schedule['every'])}",
            "ticks are at most about 1 s late; use a worker loop for anything faster",
        )


def _zone_hint(name: str) -> str | None:
    import zoneinfo

    close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
    return f'did you mean "{close[0]}"?' if close else None


def _check_schedule_data(
    c: _Checker, base: PathT, schedule: dict[str, Any], queue: Any, defaults: dict[str, Any]
) -> None:
    data = schedule.get("data", {})
    if not isinstance(data, dict) or c.doc.is_broken((*base, "data")):
        return
    ref, _ = _effective(queue if isinstance(queue, dict) else {}, defaults, "payload_schema")
    if not isinstance(ref, str):
        return
    doc = c.result.payload_docs.get(str((c.base_dir / ref).resolve()))
    if doc is None:  # missing or invalid: reported at the payload_schema already
        return
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft7Validator)
    errors = sorted(
        cls(doc, format_checker=cls.FORMAT_CHECKER).iter_errors(data),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        where = (*base, "data") if "data" in schedule else base
        listed = "; ".join(
            f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors
        )
        c.report(
            where,
            "schedule.data",
            f"data does not fit the payload_schema {_q(ref)} of queue {_q(schedule['queue'])}: "
            f"{listed}",
            key="data" not in schedule,
        )
