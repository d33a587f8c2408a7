"""The semantic check of a queue's ``group.key`` (docs/groups.md): every pointer must name a
value the queue's payload schema allows, and a scalar (a group key is a string, a number or a
boolean; an object or a list cannot be one). Pointers into data the schema leaves open are
accepted: a job without a value there runs outside any group."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cortexflow.config.yamlmarks import Document, PathT

Report = Callable[[PathT, str, str, str | None], None]


def check_groups(
    report: Report,
    doc: Document,
    queues: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base_dir: Path,
    payload_docs: Mapping[str, dict[str, Any]],
) -> None:
    for name, queue in queues.items():
        if isinstance(queue, dict) and not doc.is_broken(("queues", name, "group")):
            check_group_keys(report, name, queue, defaults, base_dir, payload_docs)


def check_group_keys(
    report: Report,
    name: str,
    queue: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base_dir: Path,
    payload_docs: Mapping[str, dict[str, Any]],
) -> None:
    group = queue.get("group")
    if not isinstance(group, dict):
        return
    ref = queue.get("payload_schema", defaults.get("payload_schema"))
    doc = payload_docs.get(str((base_dir / ref).resolve())) if isinstance(ref, str) else None
    key = group.get("key")
    pointers = [key] if isinstance(key, str) else key if isinstance(key, list) else []
    for index, pointer in enumerate(pointers):
        if not isinstance(pointer, str) or not pointer.startswith("/") or doc is None:
            continue
        where: PathT = ("queues", name, "group", "key")
        if isinstance(key, list):
            where = (*where, index)
        problem = _problem(doc, pointer)
        if problem:
            report(
                where,
                "group.key",
                f"group key {pointer!r} of queue {name!r}: {problem}",
                f"point at a string or number field of the payload ({ref}), e.g. /userId",
            )


def _problem(schema: Any, pointer: str) -> str | None:
    """Why ``pointer`` cannot name a group key in data valid under ``schema``, or None."""
    node = schema
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict):
            return None
        props = node.get("properties")
        if isinstance(props, dict) and part in props:
            node = props[part]
            continue
        if node.get("additionalProperties") is False:
            known = ", ".join(sorted(props)) if isinstance(props, dict) else "none"
            return f"the payload schema allows no property {part!r} there (it has: {known})"
        return None
    kind = node.get("type") if isinstance(node, dict) else None
    if kind in ("object", "array"):
        return f"the payload schema makes it an {kind}, which cannot be a group key"
    return None
