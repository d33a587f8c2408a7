"""Commands about a queue's groups (docs/groups.md): `groups QUEUE`, and the --group of
`pause` / `resume` (ops_cmds.py parses those and calls here)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cortexflow.cli._common import err, out, print_json
from cortexflow.cli.queue_ops import int_range, with_manager
from cortexflow.errors import EXIT_OK
from cortexflow.termsafe import escape_controls

if TYPE_CHECKING:
    from cortexflow.api.manager import QueueManager


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "groups",
        "the groups of QUEUE with the most waiting jobs, with jobs active and paused groups",
        with_manager(_groups),
    )
    p.add_argument(
        "--limit", type=int_range(1, 10_000), default=20, help="at most this many (default 20)"
    )


async def _groups(args: argparse.Namespace, manager: QueueManager) -> int:
    stats = await manager.get_group_stats(args.queue, args.limit)
    if args.json:
        print_json(stats)
        return EXIT_OK
    out(table(stats))
    return EXIT_OK


def table(stats: dict[str, Any]) -> str:
    rows = [("GROUP", "WAITING", "ACTIVE", "PAUSED")]
    rows += [
        (
            _shown(g["group"]),
            str(g["waiting"]),
            str(g["active"]),
            "yes" if g["paused"] else "",
        )
        for g in stats["groups"]
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  {r[3]}".rstrip() for r in rows
    ]
    lines.append(
        f"{stats['groupsWaiting']} groups with {stats['jobsWaitingInGroups']} jobs waiting, "
        f"{stats['groupsActive']} with jobs active"
    )
    return "\n".join(lines)


async def pause(args: argparse.Namespace, manager: QueueManager, *, paused: bool) -> int:
    changed = await manager.pause_group(args.queue, args.group, paused)
    if args.json:
        print_json({"queue": args.queue, "group": args.group, "paused": paused})
    if not args.quiet:
        what = "paused" if paused else "resumed"
        note = "" if changed else f" (it was {what} already)"
        err(f"{what} group {_shown(args.group)!r} of {args.queue!r}{note}")
    return EXIT_OK


def _shown(group: str) -> str:
    """A group key as a terminal may show it (keys come from job data)."""
    return escape_controls(group, keep_newlines=False)
