"""A queue's ``next:`` routes evaluated on how a run ended (docs/pipelines.md).

``plan(routes, doc, ...)`` is a pure function: which routes are taken, and the jobs each one
adds (queue, id, name, data, priority, delay) with the join a fan-out opens. ``RouteError``
says why a route cannot be followed (a pointer that finds nothing, ``for_each`` on something
that is not a list); the worker then fails the run, and nothing is handed off.
``encode_handoffs`` turns the plan into the finish script's argument (the only code that knows
that format besides ``scripts/include/pipeline.lua``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cortexflow.config.model import Route
from cortexflow.engine.payload import JOB_ID_FORBIDDEN, MAX_JOB_ID

MISSING = object()
MAX_CHILDREN_SHOWN = 100  # the parent's `children` field lists the first this many


class RouteError(Exception):
    """A route cannot be followed on this result: the run fails (and is retried)."""


@dataclass(frozen=True)
class NewJob:
    id: str
    name: str
    data: Any
    priority: int | None  # None: the target queue's
    delay_ms: int


@dataclass(frozen=True)
class JoinPlan:
    id: str  # the join job's id (also names its record in the children's queue)
    to: str
    name: str
    fail_fast: bool


@dataclass(frozen=True)
class Handoff:
    """The jobs one route adds to one queue (and the join its fan-out opens)."""

    route: int  # its index in the queue's next:
    to: str
    jobs: tuple[NewJob, ...]
    join: JoinPlan | None = None


def derived_id(*parts: str) -> str:
    """A job id made of ``parts`` joined with '-' (what a job id may not hold -- whitespace,
    ':', '/', control and bidi characters -- replaced by '_'; long ones shortened by a hash)."""
    text = JOB_ID_FORBIDDEN.sub("_", "-".join(parts))
    if text in ("", ".", ".."):
        text = text.replace(".", "_") or "_"
    if len(text) <= MAX_JOB_ID:
        return text
    return text[: MAX_JOB_ID - 41] + "-" + hashlib.sha1(text.encode()).hexdigest()  # noqa: S324


def resolve(doc: Any, pointer: str) -> Any:
    """The value at JSON pointer ``pointer`` (RFC 6901) in ``doc``, or MISSING."""
    if pointer == "":
        return doc
    node = doc
    for raw in pointer[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if key not in node:
                return MISSING
            node = node[key]
        elif isinstance(node, list):
            if not key.isdigit() or (len(key) > 1 and key[0] == "0") or int(key) >= len(node):
                return MISSING
            node = node[int(key)]
        else:
            return MISSING
    return node


def holds(when: Any, doc: Any) -> bool:
    """A route's ``when`` ({path, equals | in | exists}) on ``doc``; no ``when`` always holds."""
    if not when:
        return True
    value = resolve(doc, when["path"])
    if "exists" in when:
        return (value is not MISSING) == bool(when["exists"])
    if value is MISSING:
        return False
    if "equals" in when:
        return bool(_same(value, when["equals"]))
    return any(_same(value, v) for v in when.get("in", ()))


def _same(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1 (Python says it is).
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def job_id_of(parts: Sequence[str], doc: Any, parent_id: str, where: str) -> str:
    texts = []
    for part in parts:
        if part == "$id":
            texts.append(parent_id)
        elif part.startswith("/"):
            value = resolve(doc, part)
            if value is MISSING or isinstance(value, dict | list) or value is None:
                found = "nothing" if value is MISSING else f"a {type(value).__name__}"
                raise RouteError(f"{where}: id part {part!r} found {found}, not a string or number")
            texts.append(str(value).lower() if isinstance(value, bool) else str(value))
        else:
            texts.append(part)
    return derived_id(*texts)


def plan(
    routes: Sequence[Route], doc: Any, queue: str, parent_id: str, on: str = "completed"
) -> list[Handoff]:
    """The hand-offs of a job of ``queue`` that ended ``on`` ('completed': ``doc`` is its
    result; 'failed': its failure, see docs/pipelines.md). Raises RouteError."""
    out = []
    for n, route in enumerate(routes):
        if route.on != on or not holds(route.when, doc):
            continue
        where = f"next[{n}] (to {route.to})"
        if route.for_each is None:
            items: list[Any] = [doc]
        else:
            found = resolve(doc, route.for_each)
            if not isinstance(found, list):
                what = "nothing" if found is MISSING else f"a {type(found).__name__}"
                raise RouteError(f"{where}: for_each {route.for_each!r} found {what}, not a list")
            items = found
        jobs = []
        for i, item in enumerate(items):
            data = resolve(item, route.data)
            if data is MISSING:
                raise RouteError(f"{where}: data {route.data!r} finds nothing in the result")
            if route.id is not None:
                jid = job_id_of(route.id, item, parent_id, where)
            elif route.for_each is None:
                jid = derived_id(queue, parent_id, str(n))
            else:
                jid = derived_id(queue, parent_id, str(n), str(i))
            jobs.append(NewJob(jid, route.name, data, route.priority, round(route.delay * 1000)))
        join = None
        if route.join is not None:
            j = route.join
            jid = (
                job_id_of(j.id, doc, parent_id, where)
                if j.id is not None
                else derived_id(j.name, parent_id)
            )
            join = JoinPlan(jid, j.to, j.name, j.on_child_failure == "fail")
        out.append(Handoff(n, route.to, tuple(jobs), join))
    return out


def failure_doc(job_id: str, name: str, data: Any, error: str, attempts: int) -> dict[str, Any]:
    """The document of `on: failed` routes (the dead-letter envelope's fields)."""
    return {"id": job_id, "name": name, "data": data, "error": error, "attemptsMade": attempts}


@dataclass(frozen=True)
class Target:
    """What encoding a hand-off needs of its target queue."""

    base: str  # "{prefix:queue}"
    priority: int
    # The queue has a dead-letter queue: a join failed by `fail` goes there too.
    dead_letter: bool = False


def encode_handoffs(
    handoffs: Sequence[Handoff],
    texts: Sequence[Sequence[str]],
    targets: dict[str, Target],
    parent: tuple[str, str],
    outbox: bool,
    group_names: Sequence[Sequence[str]] | None = None,
) -> tuple[list[Any], str]:
    """The finish script's hand-off groups and the parent's ``children`` field.

    ``texts[k][i]`` is the JSON text of job i of handoff k (checked by the caller). A group is
    ``[mode, target base, parent JSON, [[id, name, data, priority, delay_ms, group?], ...],
    join]``, mode 'd' (written by the finish call itself) or 'o' (its outbox; a Cluster), join
    ``[id, base, name, 'f'|'c', priority, dead letter 0|1]`` or 0. ``group_names[k][i]``: the
    group of job i of handoff k in its grouped target queue ('' or absent: none)."""
    mode = "o" if outbox else "d"
    parent_json = orjson.dumps(list(parent)).decode()
    groups: list[Any] = []
    shown: list[list[str]] = []
    total = 0
    for k, (h, data) in enumerate(zip(handoffs, texts, strict=True)):
        t = targets[h.to]
        names = group_names[k] if group_names else [""] * len(h.jobs)
        jobs: list[list[Any]] = []
        for j, text, g in zip(h.jobs, data, names, strict=True):
            priority = t.priority if j.priority is None else j.priority
            jobs.append([j.id, j.name, text, priority, j.delay_ms, *([g] if g else [])])
        join: Any = 0
        if h.join is not None:
            jt = targets[h.join.to]
            policy = "f" if h.join.fail_fast else "c"
            join = [h.join.id, jt.base, h.join.name, policy, jt.priority, int(jt.dead_letter)]
        groups.append([mode, t.base, parent_json, jobs, join])
        total += len(jobs)
        for j in h.jobs:
            if len(shown) < MAX_CHILDREN_SHOWN:
                shown.append([h.to, j.id])
    children = orjson.dumps({"n": total, "ids": shown}).decode() if groups else ""
    return groups, children
