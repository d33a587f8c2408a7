"""The drawn pipeline (docs/dashboard.md, The web UI): `cortexflow dashboard` in a copy of the
shipped project (no -f, the embedded server on its unix socket) serves GET /api/pipeline with
the shipped routes and draws them on the overview as inline SVG, a box per queue linking to its
page and an arrow per route and dead letter; in Chromium the drawing has a size under the
dashboard's CSP and a click on a box opens that queue. A config without routes or dead letters
shows no Pipeline section; a route's name is escaped wherever it is drawn."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.dashboard import (
    ADMIN_TOKEN,
    CHROMIUM,
    READ_TOKEN,
    free_port,
    serve_dashboard,
    wait_healthy,
)
from tests.helpers.procs import Proc, cortexflow_argv, run_cli
from tests.helpers.project import write_project, write_shipped_project

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
SVG = "{http://www.w3.org/2000/svg}"

SHIPPED_QUEUES = [
    "message-processing",
    "webhook-processing",
    "email-sending",
    "analytics",
    "notifications",
    "dead-letters",
]
# (from, to, job name, for_each) of the shipped queues.yaml's `next:` routes.
SHIPPED_ROUTES = {
    ("message-processing", "notifications", "send-notification", None),
    ("message-processing", "analytics", "track-event", None),
    ("webhook-processing", "message-processing", "process-message", "/payloads"),
    ("notifications", "email-sending", "send-email", None),
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A real `cortexflow dashboard` in a copy of the shipped project, as a user starts it:
    in the folder of queues.yaml, no -f, no Redis URL (its embedded server)."""
    folder = write_shipped_project(tmp_path_factory.mktemp("shipped")).parent
    port = free_port()
    proc = Proc(
        cortexflow_argv("dashboard", "--port", str(port)),
        cwd=folder,
        env={"CORTEXFLOW_TOKEN": ADMIN_TOKEN, "CORTEXFLOW_READ_TOKEN": READ_TOKEN},
        name="dashboard",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base)
        yield folder, base
        assert proc.terminate(30) == 0, proc.log()
        assert "Traceback" not in proc.log(), proc.log()
    finally:
        proc.kill()


def svg_of(html: str) -> ET.Element:
    """The pipeline's <svg> element of a page, parsed as XML (so it is well-formed)."""
    found = re.search(r"<svg class='pipeline'.*?</svg>", html, re.S)
    assert found, "no pipeline drawing in the page"
    return ET.fromstring(found.group(0).replace("<svg ", f"<svg xmlns='{SVG[1:-1]}' ", 1))


def nodes_of(svg: ET.Element) -> dict[str, ET.Element]:
    return {a.get("data-queue", ""): a for a in svg.iter(f"{SVG}a")}


def edges_of(svg: ET.Element) -> list[tuple[str | None, str | None, str | None]]:
    groups = [g for g in svg.iter(f"{SVG}g") if "edge" in (g.get("class") or "").split()]
    return [(g.get("data-from"), g.get("data-to"), g.get("data-kind")) for g in groups]


def test_the_api_serves_the_shipped_routes(shipped: tuple[Path, str]) -> None:
    folder, base = shipped
    assert httpx.get(base + "/api/pipeline", timeout=20).status_code == 401
    r = httpx.get(base + "/api/pipeline", headers=READ, timeout=20)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [n["queue"] for n in body["nodes"]] == SHIPPED_QUEUES
    routes = {
        (e["from"], e["to"], e["name"], e["forEach"]) for e in body["edges"] if e["kind"] == "route"
    }
    assert routes == SHIPPED_ROUTES
    dead = {e["from"] for e in body["edges"] if e["kind"] == "dead_letter"}
    assert dead == set(SHIPPED_QUEUES) - {"dead-letters"}
    assert all(e["to"] == "dead-letters" for e in body["edges"] if e["kind"] == "dead_letter")
    layer = {n["queue"]: n["layer"] for n in body["nodes"]}
    assert layer == {
        "webhook-processing": 0,
        "message-processing": 1,
        "notifications": 2,
        "analytics": 2,
        "email-sending": 3,
        "dead-letters": None,  # the dead-letter band, under the layers
    }
    assert not any(e["back"] for e in body["edges"])
    # The same edges and labels `cortexflow graph` prints for the same file.
    printed = run_cli("graph", cwd=folder)
    assert printed.returncode == 0, printed.stderr
    served = [f"{e['from']} -> {e['to']}  [{e['label']}]" for e in body["edges"]]
    assert [s for s in served if "[dead letter]" not in s] == printed.stdout.splitlines()


def test_the_overview_draws_a_box_per_queue_and_an_arrow_per_route(
    shipped: tuple[Path, str],
) -> None:
    _, base = shipped
    job = {"name": "t", "data": {"event": "drawn"}}
    added = httpx.post(base + "/api/queues/analytics/jobs", json=job, headers=ADMIN, timeout=20)
    assert added.status_code == 201, added.text
    page = httpx.get(base + "/", headers=READ, timeout=20).text
    assert '<h2 id="pipeline">Pipeline</h2>' in page
    svg = svg_of(page)
    nodes = nodes_of(svg)
    assert sorted(nodes) == sorted(SHIPPED_QUEUES)
    for queue, a in nodes.items():
        assert a.get("href") == f"/queues/{queue}"
        waiting = a.find(f".//{SVG}tspan[@data-k='waiting']")
        assert waiting is not None and waiting.text == ("1" if queue == "analytics" else "0")
    edges = edges_of(svg)
    assert sorted(e for e in edges if e[2] == "route") == sorted(
        (a, b, "route") for a, b, _, _ in SHIPPED_ROUTES
    )
    assert sorted(e for e in edges if e[2] == "dead_letter") == sorted(
        (q, "dead-letters", "dead_letter") for q in SHIPPED_QUEUES if q != "dead-letters"
    )
    fan_out = next(g for g in svg.iter(f"{SVG}g") if g.get("data-to") == "message-processing")
    assert "edge-for-each" in (fan_out.get("class") or "")
    assert "process-message (for each)" in "".join(fan_out.itertext())
    emails = next(g for g in svg.iter(f"{SVG}g") if g.get("data-to") == "email-sending")
    assert emails.findtext(f"{SVG}text") == "send-email (when)"  # the condition: on hover
    assert 'when /type equals "email"' in (emails.findtext(f"{SVG}title") or "")
    # The same config and counts draw the same SVG; the live fragment carries it too.
    again = httpx.get(base + "/fragments/overview", headers=READ, timeout=20).text
    assert ET.tostring(svg_of(again)) == ET.tostring(svg)


HOSTILE_NAME = "</text><script>x</script>'\"&"


def test_no_pipeline_section_without_routes_and_names_are_escaped(
    tmp_path: Path, redis_url: str
) -> None:
    handlers = {"h.py": "def work(data):\n    return data\n"}
    plain = write_project(
        tmp_path / "plain",
        "version: 1\nqueues:\n  a: {handler: h:work}\n  b: {handler: h:work}\n",
        handlers,
    )
    with serve_dashboard(plain, redis_url) as base:
        page = httpx.get(base + "/", headers=ADMIN, timeout=20)
        assert page.status_code == 200 and 'data-queue="a"' in page.text
        assert "Pipeline" not in page.text and "class='pipeline'" not in page.text
        graph = httpx.get(base + "/api/pipeline", headers=ADMIN, timeout=20).json()
        assert graph["edges"] == [] and [n["queue"] for n in graph["nodes"]] == ["a", "b"]
    routed = write_project(
        tmp_path / "routed",
        "version: 1\nqueues:\n"
        "  a:\n    handler: h:work\n    next:\n"
        f"      - {{to: b, name: {json.dumps(HOSTILE_NAME)}, when: {{path: /x, equals: '<i>'}}}}\n"
        "  b: {handler: h:work}\n",
        handlers,
    )
    with serve_dashboard(routed, redis_url) as base:
        page = httpx.get(base + "/", headers=ADMIN, timeout=20).text
        assert "<script>x" not in page and "<i>" not in page
        svg = svg_of(page)  # parses: nothing broke out of its text
        (edge,) = [g for g in svg.iter(f"{SVG}g") if g.get("data-kind") == "route"]
        label = edge.find(f"{SVG}text")
        # the name, whole and escaped, then " (when)" (cut at the label's length)
        assert label is not None and (label.text or "").startswith(HOSTILE_NAME)
        title = edge.findtext(f"{SVG}title") or ""
        assert f'a → b: {HOSTILE_NAME}, when /x equals "<i>"' == title


SKIPPING = """\
version: 1
queues:
  a:
    handler: h:work
    next:
      - {to: b, name: step}
      - {to: d, name: straight-to-d}
      - {to: c, name: straight-to-c}
  b:
    handler: h:work
    next: [{to: c, name: step}]
  b2:
    handler: h:work
  c:
    handler: h:work
    next: [{to: d, name: step}]
  d: {handler: h:work}
"""


def _points(d: str) -> list[tuple[float, float]]:
    """Every end and control point of a path (its curves lie within their hull)."""
    return [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", d)]


def test_an_arrow_that_skips_a_layer_runs_over_the_boxes_not_through_them(
    tmp_path: Path,
) -> None:
    from cortexflow.config import load_config
    from cortexflow.dashboard.pipeline import plan
    from cortexflow.dashboard.pipeline_svg import render

    cfg = write_project(tmp_path, SKIPPING, {"h.py": "def work(data):\n    return data\n"})
    p = plan(load_config(cfg))
    assert [p.layer[q] for q in "abcd"] == [0, 1, 2, 3]
    svg = ET.fromstring(render(p).replace("<svg ", f"<svg xmlns='{SVG[1:-1]}' ", 1))
    boxes = {}
    for queue, node in nodes_of(svg).items():
        rect = node.find(f"{SVG}rect")
        assert rect is not None
        x, y, w = (float(rect.get(k) or 0) for k in ("x", "y", "width"))
        boxes[queue] = (x, y, x + w, y + float(rect.get("height") or 0))
    checked = 0
    for g in svg.iter(f"{SVG}g"):
        if g.get("data-kind") != "route":
            continue
        path = g.find(f"{SVG}path")
        assert path is not None
        ends = {g.get("data-from"), g.get("data-to")}
        for queue, (x1, y1, x2, _) in boxes.items():
            if queue in ends:
                continue
            inside = [(x, y) for x, y in _points(path.get("d") or "") if x1 <= x <= x2]
            # where the arrow passes a box's columns, its whole hull is above that box
            assert all(y < y1 for _, y in inside), (g.get("data-from"), g.get("data-to"), queue)
            checked += len(inside)
    assert checked > 0  # the skipping arrows did pass over boxes
    # each skipping arrow on a lane of its own (its level stretch), every box below the lanes
    lanes = set()
    for g in svg.iter(f"{SVG}g"):
        path, label = g.find(f"{SVG}path"), g.findtext(f"{SVG}text") or ""
        if path is not None and label.startswith("straight"):
            lanes.add(_points(path.get("d") or "")[4][1])
    assert len(lanes) == 2 and max(lanes) < min(y for _, y, _, _ in boxes.values())


playwright_api = pytest.importorskip("playwright.sync_api")


# The drawing's rendered size, each box's, and how a dead letter's line is dashed, read in one
# go from the document (the live fragment may swap the drawing for a fresh copy at any time: an
# element read from before the swap is detached, and has no computed style).
SIZES = """() => {
  const svg = document.querySelector("svg#pipeline-graph");
  if (!svg) return null;
  const size = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const nodes = {};
  svg.querySelectorAll("a[data-queue]").forEach((a) => {
    nodes[a.dataset.queue] = size(a.querySelector("rect"));
  });
  const dotted = svg.querySelector("g.edge-dead-letter path");
  const dash = dotted ? getComputedStyle(dotted).strokeDasharray : "";
  return size(svg)[0] > 0 ? {svg: size(svg), nodes: nodes, deadLetterDash: dash} : null;
}"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_in_chromium_the_drawing_shows_and_a_box_opens_its_queue(
    browser: Any, shipped: tuple[Path, str]
) -> None:
    _, base = shipped
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    try:
        page.goto(f"{base}/?token={ADMIN_TOKEN}")
        sizes = page.wait_for_function(SIZES).json_value()
        assert sizes["svg"][0] > 300 and sizes["svg"][1] > 100, sizes
        assert sorted(sizes["nodes"]) == sorted(SHIPPED_QUEUES), sizes
        assert all(w > 100 and h > 20 for w, h in sizes["nodes"].values()), sizes
        # dashboard.css styles it (no inline style needed): dead letters are drawn dotted.
        assert sizes["deadLetterDash"] not in ("", "none"), sizes
        page.locator("svg#pipeline-graph a[data-queue='notifications']").click()
        page.wait_for_url(f"{base}/queues/notifications", timeout=30000)
        assert page.locator("h1").inner_text() == "notifications"
        assert refused == []
    finally:
        context.close()
