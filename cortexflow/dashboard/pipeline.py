"""The declared pipeline, laid out for the dashboard: config.graph.pipeline's queues and edges
(routes, joins, dead letters) in layers from left to right, as JSON (GET /api/pipeline) and as
inline SVG (the overview's Pipeline section, pipeline_svg.py).

Layers: an edge that would close a loop is a back edge (the edges are taken routes first, then
joins, then dead letters, then the routes that say ``allow_cycle``, each in the file's order,
so a loop's ``allow_cycle`` route is the one drawn back); a queue's layer is the longest path
to it over the other edges from the queues nothing leads to. Within a layer, queues are
ordered by the mean row of their neighbours (a few sweeps, ties in the file's order). The
same config gives the same layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cortexflow.config.graph import Edge, pipeline
from cortexflow.config.model import Config


@dataclass(frozen=True)
class Plan:
    nodes: list[str]  # the queues, in the file's order
    edges: list[Edge]
    back: frozenset[int]  # indexes into edges: the edges drawn back (closing a loop)
    layer: dict[str, int]
    rows: list[list[str]]  # per layer, its queues from top to bottom
    # The dead-letter queues that only receive dead letters (no route in or out), drawn in a
    # band under the layers rather than as the last layer.
    band: list[str]

    def row(self, queue: str) -> int:
        if queue in self.band:
            return self.band.index(queue)
        return self.rows[self.layer[queue]].index(queue)


def _priority(edge: Edge) -> int:
    if edge.kind == "route":
        return 3 if edge.allow_cycle else 0
    return 1 if edge.kind == "join" else 2


def _reaches(out: Mapping[str, Sequence[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in out.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _back_edges(nodes: Sequence[str], edges: Sequence[Edge]) -> frozenset[int]:
    out: dict[str, list[str]] = {n: [] for n in nodes}
    back: set[int] = set()
    for i in sorted(range(len(edges)), key=lambda i: (_priority(edges[i]), i)):
        edge = edges[i]
        if _reaches(out, edge.target, edge.source):
            back.add(i)
        else:
            out.setdefault(edge.source, []).append(edge.target)
    return frozenset(back)


def _layers(nodes: Sequence[str], forward: Sequence[Edge]) -> dict[str, int]:
    """Longest path from the queues nothing leads to, over ``forward`` (acyclic)."""
    layer = dict.fromkeys(nodes, 0)
    incoming = dict.fromkeys(nodes, 0)
    for e in forward:
        incoming[e.target] += 1
    ready = [n for n in nodes if incoming[n] == 0]
    while ready:
        node = ready.pop(0)
        for e in forward:
            if e.source == node:
                layer[e.target] = max(layer[e.target], layer[node] + 1)
                incoming[e.target] -= 1
                if incoming[e.target] == 0:
                    ready.append(e.target)
    return layer


def _order(
    nodes: Sequence[str], layer: Mapping[str, int], forward: Sequence[Edge]
) -> list[list[str]]:
    """Each layer's queues, by the mean height of their neighbours (those before it sweeping
    right, those after it sweeping left; a layer is drawn centred); ties keep the file's
    order."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for n in nodes:
        rows[layer[n]].append(n)
    file_order = {n: i for i, n in enumerate(nodes)}

    def height(n: str) -> float:
        row = rows[layer[n]]
        return row.index(n) - (len(row) - 1) / 2

    def sweep(indexes: range, pairs: list[tuple[str, str]]) -> None:
        for li in indexes:
            here = {n: height(n) for n in rows[li]}
            near = {n: [height(b) for a, b in pairs if a == n] for n in rows[li]}
            rows[li].sort(
                key=lambda n: (sum(near[n]) / len(near[n]) if near[n] else here[n], file_order[n])
            )

    before = [(e.target, e.source) for e in forward]
    after = [(e.source, e.target) for e in forward]
    for _ in range(2):
        sweep(range(1, len(rows)), before)
        sweep(range(len(rows) - 2, -1, -1), after)
    return rows


def _band(nodes: Sequence[str], edges: Sequence[Edge]) -> list[str]:
    """The queues whose every edge is a dead letter they receive."""
    touched: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        touched[e.source].add("out")
        touched[e.target].add("dead letter in" if e.kind == "dead_letter" else "in")
    return [n for n in nodes if touched[n] == {"dead letter in"}]


def plan(config: Config) -> Plan:
    nodes, edges = pipeline(config)
    band = _band(nodes, edges)
    layered = [n for n in nodes if n not in band]
    inner = [i for i, e in enumerate(edges) if e.target not in band]
    back = frozenset(inner[i] for i in _back_edges(layered, [edges[i] for i in inner]))
    forward = [e for i, e in enumerate(edges) if i not in back and e.target not in band]
    layer = _layers(layered, forward)
    return Plan(nodes, edges, back, layer, _order(layered, layer, forward), band)


def drawn(config: Config) -> bool:
    """Whether the dashboard shows a pipeline: some queue has a route or a dead letter."""
    return any(q.routes or q.dead_letter for q in config.queues.values())


def to_json(p: Plan) -> dict[str, Any]:
    """GET /api/pipeline: ``{nodes: [{queue, layer, row}], edges: [{from, to, kind, name,
    label, on, forEach, allowCycle, back}]}``; a queue of the dead-letter band has the layer
    null."""
    return {
        "nodes": [{"queue": n, "layer": p.layer.get(n), "row": p.row(n)} for n in p.nodes],
        "edges": [
            {
                "from": e.source,
                "to": e.target,
                "kind": e.kind,
                "name": e.name,
                "label": e.label,
                "on": e.on,
                "forEach": e.for_each,
                "allowCycle": e.allow_cycle,
                "back": i in p.back,
            }
            for i, e in enumerate(p.edges)
        ],
    }
