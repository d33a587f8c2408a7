"""The declared pipeline of a Config (its queues' `next:` routes) as text, Mermaid or
Graphviz dot: `cortexflow graph` (docs/pipelines.md)."""

from __future__ import annotations

import json

from cortexflow.config.model import Config, Route


def edges(config: Config) -> list[tuple[str, str, str]]:
    """(from, to, label) per route and per join, in the file's order."""
    out = []
    for name, queue in config.queues.items():
        for route in queue.routes:
            out.append((name, route.to, label(route)))
            if route.join is not None:
                policy = route.join.on_child_failure
                out.append((route.to, route.join.to, f"join {route.join.name} ({policy})"))
    return out


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


def render_text(config: Config) -> str:
    lines = [f"{a} -> {b}  [{text}]" for a, b, text in edges(config)]
    return "\n".join(lines) if lines else "no next: routes declared"


def _id(name: str) -> str:
    return name.replace("-", "_")


def render_mermaid(config: Config) -> str:
    lines = ["flowchart LR"]
    for name in config.queues:
        lines.append(f'  {_id(name)}["{name}"]')
    for a, b, text in edges(config):
        lines.append(f'  {_id(a)} -->|"{text.replace(chr(34), "#quot;")}"| {_id(b)}')
    return "\n".join(lines)


def render_dot(config: Config) -> str:
    lines = ["digraph pipeline {", "  rankdir=LR;", "  node [shape=box];"]
    for name in config.queues:
        lines.append(f"  {json.dumps(name)};")
    for a, b, text in edges(config):
        style = ", style=dashed" if text.startswith("join ") else ""
        lines.append(f"  {json.dumps(a)} -> {json.dumps(b)} [label={json.dumps(text)}{style}];")
    lines.append("}")
    return "\n".join(lines)


RENDERERS = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot}
