"""Checks of the queues' ``next:`` routes a JSON Schema cannot express (docs/pipelines.md): a
route to an unknown queue, an id part that is not a JSON pointer, ``join`` without
``for_each``, and a loop of routes that no route allows with ``allow_cycle: true``."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from typing import Any

from cortexflow.config.diagnostics import Diagnostic
from cortexflow.config.schema import POINTER_PATTERN
from cortexflow.config.yamlmarks import Document, PathT, dotted

_POINTER = re.compile(POINTER_PATTERN)

Report = Callable[[PathT, str, str, "str | None"], None]


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def route_diagnostics(doc: Document, file: str) -> list[Diagnostic]:
    """Every problem of the queues' next: routes in ``doc``, each at its line and column."""
    found: list[Diagnostic] = []

    def report(path: PathT, code: str, message: str, hint: str | None) -> None:
        mark = doc.mark(path)
        found.append(
            Diagnostic(file, mark.line, mark.column, "error", code, dotted(path), message, hint)
        )

    data = doc.data if isinstance(doc.data, dict) else {}
    queues = data.get("queues")
    if isinstance(queues, dict):
        check_routes(report, queues)
    return found


def check_routes(report: Report, queues: dict[str, Any]) -> None:
    edges: dict[str, list[tuple[str, PathT, bool]]] = {}
    for name, queue in queues.items():
        routes = queue.get("next") if isinstance(queue, dict) else None
        if not isinstance(routes, list):
            continue
        for i, route in enumerate(routes):
            if not isinstance(route, dict):
                continue
            base: PathT = ("queues", name, "next", i)
            allow = route.get("allow_cycle") is True
            for path, target in _targets(base, route):
                if not isinstance(target, str):
                    continue
                if target not in queues:
                    _unknown(report, path, target, queues)
                else:
                    edges.setdefault(name, []).append((target, base, allow))
            _check_ids(report, base, route)
            if isinstance(route.get("join"), dict) and route.get("for_each") is None:
                report(
                    (*base, "join"),
                    "route.join-without-for-each",
                    "a join waits for the children of a fan-out: this route has no for_each",
                    "add for_each: /<list in the result>, or remove join",
                )
    _check_cycles(report, edges)


def _targets(base: PathT, route: dict[str, Any]) -> list[tuple[PathT, Any]]:
    out: list[tuple[PathT, Any]] = [((*base, "to"), route.get("to"))]
    join = route.get("join")
    if isinstance(join, dict):
        out.append(((*base, "join", "to"), join.get("to")))
    return out


def _unknown(report: Report, path: PathT, target: str, queues: dict[str, Any]) -> None:
    close = difflib.get_close_matches(target, list(queues), n=1)
    hint = f'did you mean "{close[0]}"?' if close else f"declare a queue named {_q(target)}"
    report(
        path,
        "route.unknown-queue",
        f"the route goes to {_q(target)}, which is not a queue declared here "
        f"(queues: {', '.join(queues)})",
        hint,
    )


def _check_ids(report: Report, base: PathT, route: dict[str, Any]) -> None:
    places: list[tuple[PathT, Any]] = [((*base, "id"), route.get("id"))]
    if isinstance(route.get("join"), dict):
        places.append(((*base, "join", "id"), route["join"].get("id")))
    for path, parts in places:
        if not isinstance(parts, list):
            continue
        for j, part in enumerate(parts):
            if isinstance(part, str) and part.startswith("/") and not _POINTER.match(part):
                report(
                    (*path, j),
                    "route.bad-pointer",
                    f"id part {_q(part)} is not a JSON pointer (~ must be ~0 or ~1)",
                    'write "~0" for ~ and "~1" for / inside a key',
                )


def _check_cycles(report: Report, edges: dict[str, list[tuple[str, PathT, bool]]]) -> None:
    """Every loop of routes (a queue reaching itself again) needs one route saying
    allow_cycle: true; each loop is reported once, at its first route."""
    reported: set[frozenset[str]] = set()

    def walk(start: str, node: str, trail: list[tuple[str, PathT, bool]]) -> None:
        for target, path, allow in edges.get(node, []):
            step = [*trail, (target, path, allow)]
            if target == start:
                names = frozenset(t for t, _, _ in step)
                if not any(a for _, _, a in step) and names not in reported:
                    reported.add(names)
                    loop = " -> ".join([start, *(t for t, _, _ in step)])
                    report(
                        step[0][1],
                        "route.cycle",
                        f"next: routes form a loop: {loop}",
                        "a job would start its own ancestors again without end; if that is "
                        "meant (a loop that stops on a `when`), add allow_cycle: true to one "
                        "of its routes",
                    )
            elif target not in {t for t, _, _ in trail} and len(step) < 64:
                walk(start, target, step)

    for start in sorted(edges):
        walk(start, start, [])
