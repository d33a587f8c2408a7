"""The pipeline as inline SVG (pipeline.py lays it out): a box per queue, linking to its page
and showing its waiting and active counts, and an arrow per route, join and dead letter.

No script and no style attribute (the dashboard's Content-Security-Policy allows neither
inline): the look is dashboard.css's, by class. Every text is escaped; the same plan and
counts give the same SVG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from cortexflow.config.graph import Edge
from cortexflow.dashboard.pipeline import Plan

NODE_H, ROW_GAP, PAD = 44, 26, 14
MIN_NODE_W, NAME_CHAR_W = 168, 7.4  # 12px monospace
LABEL_CHARS, LABEL_CHAR_W = 32, 6.7  # 11px monospace
MIN_GAP, BACK_ROOM, BAND_GAP = 80, 46, 56
# Forward arrows that skip a layer run over the boxes, each on a lane of its own above them.
OVER_LANE, OVER_LANES = 14, 4


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float


def _a(value: object) -> str:
    """Text for an attribute or an element: every markup character escaped."""
    return escape(str(value), quote=True)


def short_label(edge: Edge) -> str:
    if edge.kind == "dead_letter":
        return ""
    text = f"join {edge.name}" if edge.kind == "join" else edge.name
    if edge.for_each is not None:
        text += " (for each)"
    if edge.conditional:
        text += " (when)"  # the condition itself: on hover (the arrow's title)
    if edge.kind == "route" and edge.on == "failed":
        text += " (on failed)"
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Frame:
    boxes: dict[str, Box]
    width: float
    height: float
    low: float  # where the back edges run: under the layers, above the dead-letter band
    over: list[int]  # the forward edges that skip a layer (drawn over the boxes), in order


def skips(p: Plan) -> list[int]:
    """The forward edges from a layer to one past the next: drawn straight, they would cross
    the boxes of the layers between."""
    return [
        i
        for i, e in enumerate(p.edges)
        if i not in p.back
        and e.source in p.layer
        and e.target in p.layer
        and p.layer[e.target] - p.layer[e.source] > 1
    ]


def _frame(p: Plan) -> Frame:
    """Where each queue's box is: the layers left to right (under the lanes of the arrows that
    skip a layer), the dead-letter band under them."""
    widths = [max([MIN_NODE_W, *(len(n) * NAME_CHAR_W + 24 for n in row)]) for row in p.rows]
    gaps = [float(MIN_GAP)] * len(p.rows)
    for i, e in enumerate(p.edges):
        if i not in p.back and e.source in p.layer and e.target in p.layer:
            layer = p.layer[e.source]
            gaps[layer] = max(gaps[layer], len(short_label(e)) * LABEL_CHAR_W + 28)
    tallest = max(len(row) for row in p.rows)
    over = skips(p)
    lanes = min(len(over), OVER_LANES)
    room = (lanes + 1) * OVER_LANE if over else 0
    boxes: dict[str, Box] = {}
    x = float(PAD)
    for li, row in enumerate(p.rows):
        top = PAD + room + (tallest - len(row)) * (NODE_H + ROW_GAP) / 2
        for ri, queue in enumerate(row):
            boxes[queue] = Box(x, top + ri * (NODE_H + ROW_GAP), widths[li])
        x += widths[li] + gaps[li]
    width = x - gaps[-1] + PAD
    bottom = PAD + room + tallest * NODE_H + max(tallest - 1, 0) * ROW_GAP
    low = bottom + (BACK_ROOM if p.back else 0)
    if p.band:
        band_w = [max(MIN_NODE_W, len(n) * NAME_CHAR_W + 24) for n in p.band]
        span = sum(band_w) + MIN_GAP * (len(p.band) - 1)
        width = max(width, span + 2 * PAD)
        bx, top = (width - span) / 2, low + BAND_GAP
        for queue, w in zip(p.band, band_w, strict=True):
            boxes[queue] = Box(bx, top, w)
            bx += w + MIN_GAP
        low_end = top + NODE_H
    else:
        low_end = low
    return Frame(boxes, width, low_end + PAD, low, over)


def _node(queue: str, box: Box, counts: Mapping[str, Any] | None, dead: bool) -> str:
    cls = "node node-dead-letter" if dead else "node"
    parts = [
        f"<a class='{cls}' href='/queues/{_a(quote(queue, safe=''))}' data-queue='{_a(queue)}'>",
        f"<title>{_a(queue)}</title>",
        f"<rect class='node-box' x='{box.x:.1f}' y='{box.y:.1f}' width='{box.w:.1f}' "
        f"height='{NODE_H}' rx='5'/>",
        f"<text class='node-name' x='{box.x + 10:.1f}' y='{box.y + 18:.1f}'>{_a(queue)}</text>",
    ]
    if counts is not None:
        parts.append(
            f"<text class='node-counts' x='{box.x + 10:.1f}' y='{box.y + 35:.1f}'>"
            f"<tspan data-k='waiting'>{_a(counts.get('waiting', 0))}</tspan> waiting · "
            f"<tspan data-k='active'>{_a(counts.get('active', 0))}</tspan> active</text>"
        )
    parts.append("</a>")
    return "".join(parts)


def _forward_path(a: Box, b: Box, lane: int) -> tuple[str, float, float]:
    """A curve from ``a``'s right side to ``b``'s left side; where its label goes."""
    x1, y1 = a.x + a.w, a.y + NODE_H / 2
    x2, y2 = b.x, b.y + NODE_H / 2
    mid = (x1 + x2) / 2
    d = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2 - 2:.1f},{y2:.1f}"
    return d, mid, (y1 + y2) / 2 - 5 + lane * 14


def _over_path(a: Box, b: Box, lane: int) -> tuple[str, float, float]:
    """From ``a``'s right side up into the gap after it, over the boxes on its lane, and down
    in the gap before ``b`` into its left side: it crosses no box of the layers between."""
    x1, y1 = a.x + a.w, a.y + NODE_H / 2
    x2, y2 = b.x, b.y + NODE_H / 2
    y = PAD + OVER_LANE * (lane % OVER_LANES) + OVER_LANE / 2
    up = f"C{x1 + 30:.1f},{y1:.1f} {x1 + 30:.1f},{y:.1f} {x1 + 50:.1f},{y:.1f}"
    down = f"C{x2 - 30:.1f},{y:.1f} {x2 - 30:.1f},{y2:.1f} {x2 - 2:.1f},{y2:.1f}"
    d = f"M{x1:.1f},{y1:.1f} {up} L{x2 - 50:.1f},{y:.1f} {down}"
    return d, (x1 + x2) / 2, y - 3


def _back_path(a: Box, b: Box, low: float, lane: int) -> tuple[str, float, float]:
    """A curve under the boxes from ``a``'s bottom back to ``b``'s bottom."""
    x1, y1 = a.x + a.w * 0.6, a.y + NODE_H
    x2, y2 = b.x + b.w * 0.4, b.y + NODE_H
    low = low - 4 - lane * 10
    d = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{low:.1f} {x2:.1f},{low:.1f} {x2:.1f},{y2 + 2:.1f}"
    return d, (x1 + x2) / 2, (y1 + y2 + 6 * low) / 8 - 4


def _down_path(a: Box, b: Box) -> tuple[str, float, float]:
    """A curve from ``a``'s bottom down to the top of ``b``, in the dead-letter band."""
    x1, y1 = a.x + a.w / 2, a.y + NODE_H
    x2, y2 = b.x + b.w / 2, b.y
    mid = (y1 + y2) / 2
    d = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2 - 2:.1f}"
    return d, x2, mid


def _edge_class(edge: Edge, back: bool) -> str:
    cls = ["edge", f"edge-{edge.kind.replace('_', '-')}"]
    if edge.kind == "route" and edge.on == "failed":
        cls.append("edge-failed")
    if edge.for_each is not None:
        cls.append("edge-for-each")
    if back:
        cls.append("edge-back")
    return " ".join(cls)


def _edge(edge: Edge, where: tuple[str, float, float], back: bool) -> str:
    d, lx, ly = where
    text = short_label(edge)
    label = f"<text class='edge-label' x='{lx:.1f}' y='{ly:.1f}'>{_a(text)}</text>" if text else ""
    return (
        f"<g class='{_edge_class(edge, back)}' data-from='{_a(edge.source)}' "
        f"data-to='{_a(edge.target)}' data-kind='{edge.kind}'>"
        f"<title>{_a(f'{edge.source} → {edge.target}: {edge.label}')}</title>"
        f"<path class='edge-line' d='{d}' marker-end='url(#pipeline-arrow)'/>{label}</g>"
    )


def render(p: Plan, stats: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The SVG of ``p``; ``stats`` (queue -> {waiting, active, ...}) shows the
    counts in the boxes (none without it)."""
    f = _frame(p)
    dead = {e.target for e in p.edges if e.kind == "dead_letter"}
    parts = [
        f"<svg class='pipeline' id='pipeline-graph' viewBox='0 0 {f.width:.0f} {f.height:.0f}' "
        f"width='{f.width:.0f}' height='{f.height:.0f}' role='group' "
        f"aria-label='the pipeline: {len(p.nodes)} queues, {len(p.edges)} arrows'>",
        "<defs><marker id='pipeline-arrow' viewBox='0 0 10 10' refX='9' refY='5' "
        "markerWidth='7' markerHeight='7' orient='auto-start-reverse'>"
        "<path class='arrowhead' d='M0,0 L10,5 L0,10 z'/></marker></defs>",
    ]
    lanes: dict[tuple[str, str], int] = {}
    back_lane = 0
    for i, edge in enumerate(p.edges):
        a, b = f.boxes[edge.source], f.boxes[edge.target]
        if edge.target in p.band:
            parts.append(_edge(edge, _down_path(a, b), False))
        elif i in p.back:
            parts.append(_edge(edge, _back_path(a, b, f.low, back_lane), True))
            back_lane = (back_lane + 1) % 3
        elif i in f.over:
            parts.append(_edge(edge, _over_path(a, b, f.over.index(i)), False))
        else:
            lane = lanes.get((edge.source, edge.target), 0)
            lanes[(edge.source, edge.target)] = lane + 1
            parts.append(_edge(edge, _forward_path(a, b, lane), False))
    for queue in p.nodes:
        counts = None if stats is None else stats.get(queue, {})
        parts.append(_node(queue, f.boxes[queue], counts, queue in dead))
    parts.append("</svg>")
    return "".join(parts)
