"""Take the dashboard screenshots of docs/img/ from a real run of the shipped queues.yaml.

    .venv/bin/python scripts/dashboard_screenshots.py [--minutes 3] [--out docs/img]

Starts a private valkey-server, runs the shipped queues' workers (WorkerManager) and the
dashboard (uvicorn, in threads), adds jobs for ``--minutes`` minutes at a varying rate
(analytics events, in-app notifications, email notifications without an address that fail for
good and reach dead-letters, a few delayed ones), pauses webhook-processing, then screenshots
the overview, the notifications queue's failed jobs and one failed job's page with headless
Chromium (Debian's `chromium`, driven by Playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from cortexflow import QueueManager, WorkerManager  # noqa: E402
from cortexflow.dashboard.app import create_app  # noqa: E402
from cortexflow.dashboard.auth import Auth, Tokens  # noqa: E402
from cortexflow.embedded import ServerProcess, free_port  # noqa: E402

TOKEN = "screenshot-token"  # noqa: S105 (a throwaway server)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def load(url: str, minutes: float) -> str:
    """Add jobs for ``minutes``; returns the id of a notification that failed for good."""
    config = REPO / "queues.yaml"
    failed = ""
    async with QueueManager(config, url) as qm, WorkerManager(config, url):
        await qm.pause_queue("webhook-processing")
        await qm.add_bulk(
            "webhook-processing",
            [
                {
                    "name": "process-webhook",
                    "data": {"webhookId": f"wh-{i}", "channel": "webchat", "payload": {}},
                }
                for i in range(12)
            ],
        )
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < minutes * 60:
            rate = int(8 + 6 * math.sin(tick / 9))
            await qm.add_bulk(
                "analytics",
                [
                    {"name": "track-event", "data": {"event": "message_sent", "userId": f"u{i}"}}
                    for i in range(rate)
                ],
            )
            await qm.add_job(
                "notifications",
                "send-notification",
                {"userId": f"user-{tick}", "type": "in-app", "title": "Hi", "message": "Hello"},
            )
            if tick % 7 == 0:
                failed = await qm.add_job(
                    "notifications",
                    "send-notification",
                    {"userId": f"user-{tick}", "type": "email", "message": "no address"},
                )
            if tick % 11 == 0:
                await qm.add_job("analytics", "track-event", {"event": "later"}, delay=3_600_000)
            tick += 1
            await asyncio.sleep(1)
        await asyncio.sleep(3)
    return failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cf-shots-") as tmp:
        server = ServerProcess(Path(tmp) / "valkey", appendonly=False)
        server.start()
        try:
            url = server.url
            app = create_app(QueueManager(REPO / "queues.yaml", url), Auth(Tokens(TOKEN)))
            port = free_port()
            srv = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=srv.run, daemon=True)
            thread.start()
            base = f"http://127.0.0.1:{port}"
            failed: list[str] = []
            loader = threading.Thread(
                target=lambda: failed.append(asyncio.run(load(url, args.minutes))), daemon=True
            )
            loader.start()
            # Shoot while the workers still run (so the worker table is full).
            time.sleep(args.minutes * 60 - 5)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{base}/?token={TOKEN}")
                page.wait_for_timeout(2500)
                page.screenshot(path=str(args.out / "dashboard-overview.png"), full_page=True)
                page.goto(f"{base}/queues/notifications?state=failed")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(args.out / "dashboard-queue.png"), full_page=True)
                loader.join(60)
                page.goto(f"{base}/queues/notifications/jobs/{failed[0]}")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(args.out / "dashboard-job.png"), full_page=True)
                browser.close()
            srv.should_exit = True
            thread.join(15)
        finally:
            server.stop()
    print(f"wrote {args.out}/dashboard-{{overview,queue,job}}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
