"""Charts drawn on the server as inline SVG: no chart library, nothing to fetch."""

from __future__ import annotations

import time
from html import escape

WIDTH, HEIGHT, PAD = 720, 140, 24


def throughput_svg(series: dict[str, list[tuple[int, int, int]]]) -> str:
    """Stacked bars per minute (completed, failed) summed over the queues of ``series``
    (queue -> [(minute start, completed, failed)], the same minutes for every queue)."""
    minutes: list[tuple[int, int, int]] = []
    for rows in zip(*series.values(), strict=True):
        minutes.append((rows[0][0], sum(r[1] for r in rows), sum(r[2] for r in rows)))
    if not minutes:
        return "<p class='muted'>No queues.</p>"
    top = max(1, *(c + f for _, c, f in minutes))
    slot = (WIDTH - PAD) / len(minutes)
    bar = max(slot - 1, 1)
    scale = (HEIGHT - PAD) / top
    parts = [
        f"<svg class='chart' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
        f"aria-label='jobs finished per minute, last hour'>",
        f"<text x='0' y='12' class='axis'>{top}/min</text>",
        f"<line x1='{PAD}' y1='{HEIGHT - PAD}' x2='{WIDTH}' y2='{HEIGHT - PAD}' class='base'/>",
    ]
    for i, (t, completed, failed) in enumerate(minutes):
        x = PAD + i * slot
        hc, hf = completed * scale, failed * scale
        y = HEIGHT - PAD - hc
        label = time.strftime("%H:%M", time.gmtime(t))
        tip = f"<title>{label} UTC: {completed} completed, {failed} failed</title>"
        parts.append(
            f"<g><rect x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{hc:.1f}' class='ok'/>"
            f"<rect x='{x:.1f}' y='{y - hf:.1f}' width='{bar:.1f}' height='{hf:.1f}' "
            f"class='bad'/>{tip}</g>"
        )
        if i % 15 == 0:
            parts.append(f"<text x='{x:.1f}' y='{HEIGHT - 6}' class='axis'>{label}</text>")
    parts.append("</svg>")
    done = {q: (sum(r[1] for r in rows), sum(r[2] for r in rows)) for q, rows in series.items()}
    legend = " · ".join(
        f"<span>{escape(q)}: {c} done, {f} failed</span>" for q, (c, f) in done.items()
    )
    return "".join(parts) + f"<p class='legend'>Last hour (UTC): {legend}</p>"
