"""`cortexflow schedules`: list the stored schedules, or `schedules trigger NAME` to add a run
now. Parse, one QueueManager call, render."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cortexflow.cli._common import err, out, print_json
from cortexflow.cli.queue_ops import with_manager
from cortexflow.cli.render import table, timestamp
from cortexflow.errors import EXIT_OK

if TYPE_CHECKING:
    from cortexflow.api.manager import QueueManager


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    summary = "schedules: queue, rule, timezone, last and next run (`trigger NAME`: run now)"
    p: argparse.ArgumentParser = sub.add_parser(
        "schedules", parents=parents, help=summary, description=summary
    )
    p.set_defaults(func=with_manager(_list))
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    t = actions.add_parser(
        "trigger",
        parents=parents,
        help="add one run of schedule NAME now, outside its ticks; prints the job id",
        description="add one run of schedule NAME now, outside its ticks; prints the job id",
    )
    t.add_argument("name", metavar="NAME")
    t.set_defaults(func=with_manager(_trigger))


async def _list(args: argparse.Namespace, manager: QueueManager) -> int:
    rows = await manager.list_schedules()
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        if not args.quiet:
            err("no schedules (declare them under schedules: in queues.yaml)")
        return EXIT_OK
    out(
        table(
            ["SCHEDULE", "QUEUE", "RULE", "TIMEZONE", "LAST RUN", "NEXT RUN"],
            [
                [
                    r["name"],
                    r["queue"],
                    r["rule"],
                    r["timezone"],
                    timestamp(r["lastRun"]),
                    timestamp(r["nextRun"]),
                ]
                for r in rows
            ],
        )
    )
    return EXIT_OK


async def _trigger(args: argparse.Namespace, manager: QueueManager) -> int:
    job_id = await manager.trigger_schedule(args.name)
    if args.json:
        print_json({"schedule": args.name, "id": job_id})
    else:
        out(job_id)
    return EXIT_OK
