"""JSON Schema validation of queues.yaml, each error explained at the right YAML node.

- an unknown key points at the key, with a "did you mean" hint;
- a missing required key points at the mapping that lacks it;
- a wrong value points at the value and says what was expected and what was found.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from cortexflow.config.diagnostics import Diagnostic
from cortexflow.config.schema import PATTERN_NAMES, QUEUE_NAME_PATTERN
from cortexflow.config.yamlmarks import Document, PathT, dotted
from cortexflow.durations import DURATION_PATTERN

_HINTS: dict[tuple[str | int, ...], str] = {
    ("defaults", "handler"): "handler belongs to each queue, not to defaults",
}


def schema_diagnostics(doc: Document, schema: dict[str, Any], file: str) -> list[Diagnostic]:
    validator = jsonschema.Draft7Validator(schema)
    out: list[Diagnostic] = []
    for error in validator.iter_errors(doc.data):
        out.extend(_explain(error, doc, file))
    return out


def show(value: Any) -> str:
    """How a found value reads in a message: JSON-ish, strings quoted and shortened."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + '..."'


def describe(schema: dict[str, Any]) -> str:
    """What a schema accepts, in words: 'an integer >= 1', 'a duration with a unit, ...'."""
    if "const" in schema:
        return json.dumps(schema["const"])
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(describe(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if len(types) > 1 and "null" in types:
        types.remove("null")
    pattern = schema.get("pattern")
    if pattern in PATTERN_NAMES and types == ["string"]:
        return PATTERN_NAMES[pattern]
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "object": "a mapping",
        "array": "a list",
        "boolean": "true or false",
        "null": "null",
    }
    parts = [words.get(t, t) for t in types] or ["a value"]
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        parts[0] += f" from {low} to {high}"
    elif low is not None:
        parts[0] += f" >= {low}"
    elif high is not None:
        parts[0] += f" <= {high}"
    return " or ".join(parts)


def _diag(
    doc: Document,
    file: str,
    path: PathT,
    code: str,
    message: str,
    hint: str | None = None,
    *,
    key: bool = False,
) -> Diagnostic:
    mark = doc.mark(path, key=key)
    return Diagnostic(file, mark.line, mark.column, "error", code, dotted(path), message, hint)


def _explain(error: ValidationError, doc: Document, file: str) -> Iterator[Diagnostic]:
    path: PathT = tuple(error.absolute_path)
    if doc.is_broken(path):
        return
    kind = error.validator
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if kind == "additionalProperties":
        yield from _unknown_keys(error, doc, file, path, schema)
    elif kind == "required":
        yield from _missing(error, doc, file, path)
    elif "propertyNames" in error.schema_path:
        name = str(error.instance)
        yield _diag(
            doc,
            file,
            (*path, name),
            "schema.queue-name",
            f"{json.dumps(name)} is not a valid queue name: expected "
            f"{PATTERN_NAMES[QUEUE_NAME_PATTERN]}, at most 63 characters",
            f'e.g. "{_suggest_name(name)}"',
            key=True,
        )
    elif kind in ("oneOf", "anyOf"):
        yield from _alternatives(error, doc, file, path, schema)
    elif schema.get("pattern") == DURATION_PATTERN and kind in ("type", "pattern"):
        hint = duration_hint(error.instance)
        yield _diag(
            doc,
            file,
            path,
            "duration.invalid",
            f"expected {describe(schema)}, got {show(error.instance)}",
            hint,
        )
    elif kind == "minProperties" and path == ("queues",):
        yield _diag(
            doc,
            file,
            path,
            "schema.minProperties",
            "declare at least one queue",
            'e.g.\n    emails:\n      handler: "myapp.tasks:send_email"',
            key=True,
        )
    elif kind in ("type", "minimum", "maximum", "pattern", "const", "enum", "minLength"):
        yield _diag(
            doc,
            file,
            path,
            f"schema.{kind}",
            f"expected {describe(schema)}, got {show(error.instance)}",
        )
    else:
        yield _diag(doc, file, path, f"schema.{kind}", error.message)


def _unknown_keys(
    error: ValidationError, doc: Document, file: str, path: PathT, schema: dict[str, Any]
) -> Iterator[Diagnostic]:
    known = list(schema.get("properties", {}))
    instance: dict[str, Any] = error.instance if isinstance(error.instance, dict) else {}
    for key in instance:
        if key in known:
            continue
        hint = _HINTS.get((*path[-1:], key)) if path else None
        if hint is None:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(known)}"
        yield _diag(
            doc,
            file,
            (*path, key),
            "schema.additional",
            f"unknown key {json.dumps(key)}",
            hint,
            key=True,
        )


def _missing(error: ValidationError, doc: Document, file: str, path: PathT) -> Iterator[Diagnostic]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    required: list[str] = list(error.validator_value or ())  # type: ignore[arg-type]
    for key in required:
        if key in instance:
            continue
        hint = 'add handler: "package.module:function"' if key == "handler" else None
        if key == "queues":
            hint = (
                "add a queues: mapping with at least one queue (`cortexflow init` writes a starter)"
            )
        yield _diag(
            doc,
            file,
            path,
            "schema.required",
            f"missing required key {json.dumps(key)}",
            hint,
            key=True,
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _alternatives(
    error: ValidationError, doc: Document, file: str, path: PathT, schema: dict[str, Any]
) -> Iterator[Diagnostic]:
    """oneOf/anyOf: explain through the branch of the value's type, else list what fits."""
    branches: list[dict[str, Any]] = schema.get(str(error.validator), [])
    found = _json_type(error.instance)
    matching = []
    for i, branch in enumerate(branches):
        types = branch.get("type", [])
        types = [types] if isinstance(types, str) else types
        if found in types or (found == "integer" and "number" in types):
            matching.append(i)
    if len(matching) == 1:
        sub = [e for e in error.context or () if e.schema_path and e.schema_path[0] == matching[0]]
        if sub:
            for e in sub:
                yield from _explain(e, doc, file)
            return
    consts = [b["const"] for b in branches if "const" in b]
    hint = None
    if consts and len(consts) == len(branches) and isinstance(error.instance, str):
        close = difflib.get_close_matches(error.instance, [str(c) for c in consts], n=1)
        hint = f'did you mean "{close[0]}"?' if close else None
        code = "schema.enum"
    else:
        code = "schema.type"
    yield _diag(
        doc, file, path, code, f"expected {describe(schema)}, got {show(error.instance)}", hint
    )


_SPELLED = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?"
    r"|h|hrs?|hours?|d|days?)\s*$",
    re.IGNORECASE,
)


def duration_hint(value: Any) -> str | None:
    """'durations need a unit' for a bare number; the right spelling for "5 minutes"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 'durations need a unit, e.g. "5s"'
    m = _SPELLED.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    word = m.group(2).lower()
    unit = "ms" if word.startswith(("ms", "mil")) else word[0]
    return f'write "{m.group(1)}{unit}"'


def _suggest_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "-" for c in name.lower()).strip("-_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "q-" + cleaned
    return cleaned[:63]
