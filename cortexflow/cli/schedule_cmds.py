"""`cortexflow schedules`: list the stored schedules, or `schedules trigger NAME` to add a run
now. Parse, one QueueManager call, render."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cortexflow.cli._common import err, global_options, out, print_json
from cortexflow.cli.queue_ops import with_manager
from cortexflow.cli.render import table, timestamp
from cortexflow.errors import EXIT_OK, UsageError

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
        # Options given before `trigger` (`schedules -f other.yaml trigger NAME`) must stay.
        parents=[global_options(defaults=False)],
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
            err(_none_stored(manager))
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


def _none_stored(manager: QueueManager) -> str:
    declared = len(manager.config.schedules)
    if not declared:
        return "no schedules (declare them under schedules: in queues.yaml)"
    # Declared but not in Redis: `up` writes them when it starts (docs/schedules.md).
    return (
        f"no schedules stored yet: queues.yaml declares {declared}, which `cortexflow up` "
        "stores when it starts"
    )


async def _trigger(args: argparse.Namespace, manager: QueueManager) -> int:
    try:
        job_id = await manager.trigger_schedule(args.name)
    except UsageError:
        if args.name not in manager.config.schedules:
            raise
        raise UsageError(
            f"schedule {args.name!r} is declared in queues.yaml but not stored yet: "
            "`cortexflow up` stores the schedules when it starts"
        ) from None
    if args.json:
        print_json({"schedule": args.name, "id": job_id})
    else:
        out(job_id)
    return EXIT_OK
