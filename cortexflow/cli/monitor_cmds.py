"""Monitoring commands: `events` (follow a queue's state changes) and `dashboard` (web UI,
JSON API, /metrics)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from cortexflow.cli._common import config_path, err, out
from cortexflow.cli.queue_ops import int_range, with_manager
from cortexflow.cli.render import timestamp
from cortexflow.errors import EXIT_OK

if TYPE_CHECKING:
    from cortexflow.api.manager import QueueManager
    from cortexflow.engine.events import Event


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    help = "follow QUEUE's events (added, active, progress, completed, failed, ...) like tail -f"
    p = sub.add_parser("events", parents=parents, help=help, description=help)
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument(
        "--from",
        dest="start",
        default="$",
        metavar="ID",
        help='resume after this event id ("0": every event kept; default: only new ones)',
    )
    p.add_argument("--count", type=int_range(1), default=None, help="stop after this many events")
    p.set_defaults(func=_events_cmd)

    help = "serve the web dashboard, the JSON API and /metrics"
    p = sub.add_parser("dashboard", parents=parents, help=help, description=help)
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int_range(0, 65535), default=None, help="default 8000")
    p.add_argument("--metrics-public", action="store_true", help="serve /metrics without a token")
    p.add_argument(
        "--max-streams",
        type=int_range(1, 10000),
        default=50,
        help="event streams (SSE) open at once; the one past it gets 503 (default 50)",
    )
    p.add_argument(
        "--max-body",
        type=int_range(1024, 1 << 30),
        default=None,
        metavar="BYTES",
        help="largest request body of an API write; a larger one gets 413 before it is read "
        "(default 8 MiB: a job of the largest payload fits)",
    )
    p.add_argument(
        "--print-url",
        action="store_true",
        help="print the URL to open (with the generated token) and exit; host and port "
        "default to queues.yaml's dashboard: section",
    )
    p.add_argument(
        "--no-login-url",
        dest="login_url",
        action="store_false",
        help="never print the token: say where it is kept instead (what `up` passes)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="json: its own and uvicorn's log lines as one JSON object each "
        "(default: logging.format of queues.yaml, else text)",
    )
    p.set_defaults(func=_dashboard)


def _line(event: Event) -> str:
    extra = " ".join(f"{k}={v}" for k, v in event.fields.items())
    return "  ".join(
        x for x in (timestamp(event.timestamp), event.event, event.job_id or "", extra) if x
    )


def _events_cmd(args: argparse.Namespace) -> int:
    try:
        return with_manager(_events)(args)
    except KeyboardInterrupt:  # the way to stop following
        return EXIT_OK


async def _events(args: argparse.Namespace, manager: QueueManager) -> int:
    from cortexflow.api.events import QueueEvents

    manager.get_queue(args.queue)  # an unknown queue is a usage error, at once
    seen = 0
    async for event in QueueEvents(args.queue, last_event_id=args.start, manager=manager):
        out(json.dumps(event.to_dict()) if args.json else _line(event))
        sys.stdout.flush()
        seen += 1
        if args.count is not None and seen >= args.count:
            break
    return EXIT_OK


def _dashboard(args: argparse.Namespace) -> int:
    from cortexflow.dashboard.serve import ServeOptions, print_url, serve
    from cortexflow.worker.env import ENV_REDIS_URL

    # Under `up` (dashboard: in queues.yaml) the supervisor passes the URL it resolved.
    url = args.redis_url or os.environ.get(ENV_REDIS_URL) or None
    host, port = args.host, args.port
    if args.print_url:
        from cortexflow.config import load_config

        section = load_config(config_path(args)).dashboard
        host = host or (section.host if section else None)
        port = port if port is not None else (section.port if section else None)
    options = ServeOptions(
        config_path(args),
        url,
        host or "127.0.0.1",
        8000 if port is None else port,
        args.metrics_public,
        args.max_streams,
        args.login_url,
    )
    if args.max_body is not None:
        options = dataclasses.replace(options, max_body=args.max_body)
    if args.log_format is not None:
        options = dataclasses.replace(options, log_format=args.log_format)
    if args.print_url:
        return print_url(options, say=out)
    return serve(options, say=err)
