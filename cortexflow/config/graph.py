"""The declared pipeline of a Config (its queues' `next:` routes) as text, Mermaid or
Graphviz dot: `cortexflow graph` (docs/pipelines.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from cortexflow.config.model import Config, Route

EdgeKind = Literal["route", "join", "dead_letter"]


@dataclass(frozen=True)
class Edge:
    """One arrow of the pipeline: a route, a fan-out's join (drawn from the fan-out's target
    queue to the join's queue) or a queue's dead letter."""

    source: str
    target: str
    kind: EdgeKind
    name: str  # the job name the route or join adds; "" for a dead letter
    label: str  # the long label `cortexflow graph` prints
    on: Literal["completed", "failed"] = "completed"
    for_each: str | None = None
    allow_cycle: bool = False
    conditional: bool = False  # a route with `when:` (taken only when its condition holds)


def pipeline(config: Config) -> tuple[list[str], list[Edge]]:
    """The queues (in the file's order) and the edges between them: per queue, each route and
    its join, then the queue's dead letter. The CLI and the dashboard both draw this."""
    out: list[Edge] = []
    for name, queue in config.queues.items():
        for route in queue.routes:
            out.append(
                Edge(
                    name,
                    route.to,
                    "route",
                    route.name,
                    label(route),
                    on=route.on,
                    for_each=route.for_each,
                    allow_cycle=route.allow_cycle,
                    conditional=bool(route.when),
                )
            )
            if route.join is not None:
                policy = route.join.on_child_failure
                text = f"join {route.join.name} ({policy})"
                out.append(Edge(route.to, route.join.to, "join", route.join.name, text))
        if queue.dead_letter:
            out.append(Edge(name, queue.dead_letter, "dead_letter", "", "dead letter", "failed"))
    return list(config.queues), out


def drawn(config: Config, dead_letters: bool) -> list[Edge]:
    """The edges `cortexflow graph` prints: routes and joins, dead letters when asked."""
    return [e for e in pipeline(config)[1] if dead_letters or e.kind != "dead_letter"]


def label(route: Route) -> str:
    parts = [route.name]
    if route.for_each is not None:
        parts.append(f"for each {route.for_each}")
    if route.when:
        cond = {k: v for k, v in route.when.items() if k != "path"}
        (op, value), *_ = cond.items()
        parts.append(f"when {route.when['path']} {op} {json.dumps(value)}")
    if route.on == "failed":
        parts.append("on failed")
    return ", ".join(parts)


def render_text(config: Config, dead_letters: bool = False) -> str:
    lines = [f"{e.source} -> {e.target}  [{e.label}]" for e in drawn(config, dead_letters)]
    return "\n".join(lines) if lines else "no next: routes declared"


def _id(name: str) -> str:
    return name.replace("-", "_")


def render_mermaid(config: Config, dead_letters: bool = False) -> str:
    lines = ["flowchart LR"]
    for name in config.queues:
        lines.append(f'  {_id(name)}["{name}"]')
    for e in drawn(config, dead_letters):
        arrow = "-.->" if e.kind == "dead_letter" else "-->"
        text = e.label.replace(chr(34), "#quot;")
        lines.append(f'  {_id(e.source)} {arrow}|"{text}"| {_id(e.target)}')
    return "\n".join(lines)


def render_dot(config: Config, dead_letters: bool = False) -> str:
    lines = ["digraph pipeline {", "  rankdir=LR;", "  node [shape=box];"]
    for name in config.queues:
        lines.append(f"  {json.dumps(name)};")
    styles = {"route": "", "join": ", style=dashed", "dead_letter": ", style=dotted"}
    for e in drawn(config, dead_letters):
        arrow = f"{json.dumps(e.source)} -> {json.dumps(e.target)}"
        lines.append(f"  {arrow} [label={json.dumps(e.label)}{styles[e.kind]}];")
    lines.append("}")
    return "\n".join(lines)


RENDERERS = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot}
