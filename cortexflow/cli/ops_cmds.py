"""Operations commands: enqueue, stats, health, pause, resume, jobs, job, retry, promote,
remove, clean, drain, obliterate. Each parses its arguments, makes one call into the
QueueManager / the queue's engine, renders the result and returns the exit code.

Output: data on stdout (tables, ids, JSON with --json); messages on stderr (-q hides them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cortexflow.cli import enqueue_cmd, group_cmds
from cortexflow.cli._common import err, out, print_json
from cortexflow.cli.queue_ops import add_yes, confirm, duration, int_range, with_manager
from cortexflow.cli.render import health_text, job_text, jobs_table, stats_table, timestamp
from cortexflow.durations import format_duration
from cortexflow.errors import EXIT_FAILURE, EXIT_OK, CortexflowError, JobNotFoundError, UsageError

if TYPE_CHECKING:
    from cortexflow.api.manager import QueueManager
    from cortexflow.engine.queue import QueueEngine

# `jobs` without --state lists these, in this order.
JOB_STATES = ("active", "waiting", "delayed", "failed", "completed")
CLEAN_STATES = ("completed", "failed", "waiting", "delayed")


Add = Callable[..., argparse.ArgumentParser]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    enqueue_cmd.register(sub, parents)

    def add(name: str, help: str, func: Any, queue: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=parents, help=help, description=help
        )
        if queue:
            p.add_argument("queue", metavar="QUEUE")
        p.set_defaults(func=func)
        return p

    group_cmds.register(add)
    _register_monitoring(add)
    _register_control(add)
    _register_removal(add)


def _register_monitoring(add: Add) -> None:
    """stats, analytics, health, jobs, job: commands that only read."""
    p = add(
        "stats",
        "job counts per queue: a table, or with --json a list of stats objects",
        _stats_cmd,
        queue=False,
    )
    p.add_argument("queues", metavar="QUEUE", nargs="*", help="queues to show (default: all)")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument(
        "--interval", type=duration, default=1.0, help="--watch refresh period (default 1s)"
    )

    p = add(
        "analytics",
        "one day's aggregates of the analytics queue's track-event jobs, as JSON",
        with_manager(_analytics),
        queue=False,
    )
    p.add_argument("day", nargs="?", metavar="DAY", help="YYYY-MM-DD, UTC (default: today)")

    p = add(
        "health",
        "Redis reachable and every queue `up` runs has a live worker (exit 1 if not)",
        with_manager(_health),
        queue=False,
    )
    p.add_argument(
        "--require-workers",
        action="store_true",
        help="also unhealthy when a queue has no live worker at all, whoever should run it "
        "(for an alert on a host where the workers must always run)",
    )
    p = add("jobs", "list jobs of QUEUE, newest finished first", with_manager(_jobs))
    p.add_argument("--state", choices=JOB_STATES, help="only jobs in this state (default: all)")
    p.add_argument("--limit", type=int_range(1), default=20, help="at most this many (default 20)")
    p.add_argument("--group", help="only jobs of this group (docs/groups.md)")

    p = add(
        "job",
        "show one job: state, attempts, result or error, timestamps, logs",
        with_manager(_job),
    )
    p.add_argument("id", metavar="ID")


def _register_control(add: Add) -> None:
    """pause, resume, retry, promote: commands that change what runs, deleting nothing."""
    p = add(
        "pause",
        "no new job starts in QUEUE (or in one --group of it), on any host; running jobs finish",
        with_manager(_pause),
    )
    p.add_argument("--group", help="pause this group of QUEUE only")
    p = add("resume", "let a paused QUEUE (or --group) start jobs again", with_manager(_resume))
    p.add_argument("--group", help="resume this group of QUEUE only")

    p = add("retry", "move failed jobs back to waiting, attempts reset", with_manager(_retry))
    p.add_argument("ids", metavar="ID", nargs="*")
    p.add_argument("--all", action="store_true", help="every failed job of QUEUE")

    p = add("promote", "run a delayed job now", with_manager(_promote))
    p.add_argument("id", metavar="ID")


def _register_removal(add: Add) -> None:
    """remove, clean, drain, obliterate: commands that delete jobs (they ask, or take --yes)."""
    p = add("remove", "remove one job that is not active", with_manager(_remove))
    p.add_argument("id", metavar="ID")
    add_yes(p)

    p = add(
        "clean",
        "remove finished (or waiting/delayed) jobs older than --grace",
        with_manager(_clean),
    )
    p.add_argument("--grace", type=duration, required=True, help='minimum age, e.g. "1h"')
    p.add_argument(
        "--limit", type=int_range(0), default=0, help="at most this many (default 0: all)"
    )
    p.add_argument("--state", choices=CLEAN_STATES, default="completed", help="default: completed")
    add_yes(p)

    p = add(
        "drain",
        "remove every waiting job of QUEUE (and delayed ones with --delayed)",
        with_manager(_drain),
    )
    p.add_argument("--delayed", action="store_true", help="remove delayed jobs too")
    add_yes(p)

    p = add(
        "obliterate",
        "remove QUEUE's data entirely: every job, the paused flag",
        with_manager(_obliterate),
    )
    p.add_argument("--force", action="store_true", help="even while jobs are active")
    add_yes(p)


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        err(message)


# -- monitoring ------------------------------------------------------------------------------


def _stats_cmd(args: argparse.Namespace) -> int:
    try:
        return with_manager(_stats)(args)
    except KeyboardInterrupt:  # the way to leave --watch
        return EXIT_OK if args.watch else 130


async def _stats(args: argparse.Namespace, manager: QueueManager) -> int:
    names = args.queues or None
    if not args.watch:
        stats = await manager.get_all_queue_stats(names)
        print_json(stats) if args.json else out(stats_table(stats))
        return EXIT_OK
    clear = sys.stdout.isatty()
    while True:
        stats = await manager.get_all_queue_stats(names)
        if args.json:
            out(json.dumps(stats))
        else:
            every = format_duration(args.interval)
            head = f"{timestamp(time.time())}  every {every}, Ctrl-C to stop"
            if clear:
                sys.stdout.write("\x1b[H\x1b[2J")  # our own escape: home, clear
            out(head + "\n" + stats_table(stats) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(args.interval)


async def _health(args: argparse.Namespace, manager: QueueManager) -> int:
    await manager.connect()  # unreachable: exit 69 with the (redacted) URL, not just "unhealthy"
    report = await manager.health_check(require_workers=args.require_workers)
    print_json(report) if args.json else out(health_text(report))
    return EXIT_OK if report["healthy"] else EXIT_FAILURE


async def _analytics(args: argparse.Namespace, manager: QueueManager) -> int:
    import datetime as dt

    from cortexflow.queues.analytics import read_daily

    day = args.day or dt.datetime.now(dt.UTC).date().isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise UsageError(f"DAY must look like 2026-11-28, got {day!r}") from None
    print_json(await read_daily(await manager.redis_client(), day))
    return EXIT_OK


async def _pause(args: argparse.Namespace, manager: QueueManager) -> int:
    if args.group is not None:
        return await group_cmds.pause(args, manager, paused=True)
    await manager.pause_queue(args.queue)
    if args.json:
        print_json({"queue": args.queue, "paused": True})
    _say(
        args,
        f"paused {args.queue!r}: running jobs finish, no new one starts until "
        f"`cortexflow resume {args.queue}`",
    )
    return EXIT_OK


async def _resume(args: argparse.Namespace, manager: QueueManager) -> int:
    if args.group is not None:
        return await group_cmds.pause(args, manager, paused=False)
    await manager.resume_queue(args.queue)
    if args.json:
        print_json({"queue": args.queue, "paused": False})
    _say(args, f"resumed {args.queue!r}")
    return EXIT_OK


async def _jobs(args: argparse.Namespace, manager: QueueManager) -> int:
    engine = manager.get_queue(args.queue)
    await manager.connect()
    found: list[Any] = []
    for state in [args.state] if args.state else JOB_STATES:
        if len(found) >= args.limit:
            break
        if args.group is not None:
            found += await engine.groups.jobs(args.group, state, args.limit - len(found))
        else:
            found += await engine.list_jobs(state, 0, args.limit - len(found))
    if args.json:
        print_json([j.to_dict() for j in found])
    elif found:
        out(jobs_table(found, shutil.get_terminal_size().columns))
    else:
        _say(args, f"no {args.state or ''} jobs in {args.queue!r}".replace("  ", " "))
    return EXIT_OK


async def _job(args: argparse.Namespace, manager: QueueManager) -> int:
    engine = manager.get_queue(args.queue)
    await manager.connect()
    job = await engine.get_job(args.id)
    if job is None:
        raise JobNotFoundError(
            f"no job {args.id!r} in queue {args.queue!r} (finished jobs are "
            "removed as the queue's retention says)"
        )
    logs = await engine.get_logs(args.id)
    print_json({**job.to_dict(), "logs": logs}) if args.json else out(job_text(job, logs))
    return EXIT_OK


# -- operations ------------------------------------------------------------------------------


async def _retry(args: argparse.Namespace, manager: QueueManager) -> int:
    if bool(args.ids) == bool(args.all):
        raise UsageError("give the ids of failed jobs to retry, or --all (not both)")
    engine = manager.get_queue(args.queue)
    await manager.connect()
    retried = await engine.retry(args.ids or None)
    moved = set(retried)
    missed = [i for i in dict.fromkeys(args.ids) if i not in moved]
    if missed and not retried:
        # Nothing moved: only the error (a "moved 0" line first read as a success).
        raise CortexflowError(await _not_retried(engine, args.queue, missed))
    print_json({"retried": retried}) if args.json else out("\n".join(retried)) if retried else None
    _say(args, f"moved {len(retried)} failed job(s) of {args.queue!r} back to waiting")
    if missed:
        err(f"error: {await _not_retried(engine, args.queue, missed)}")
        return EXIT_FAILURE
    return EXIT_OK


async def _not_retried(engine: QueueEngine, queue: str, ids: list[str]) -> str:
    """Why ``ids`` were not retried: no such job, or the state each is in (only a failed job
    can be retried)."""
    why = []
    for job_id in ids:
        job = await engine.get_job(job_id)
        state = f"no such job in queue {queue!r}" if job is None else f"{job.state}, not failed"
        why.append(f"{job_id} ({state})")
    return f"not retried: {'; '.join(why)}"


async def _promote(args: argparse.Namespace, manager: QueueManager) -> int:
    engine = manager.get_queue(args.queue)
    await manager.connect()
    if await engine.promote(args.id):
        _say(args, f"job {args.id} of {args.queue!r} is waiting now")
        return EXIT_OK
    job = await engine.get_job(args.id)
    if job is None:
        raise JobNotFoundError(f"no job {args.id!r} in queue {args.queue!r}")
    err(f"error: job {args.id} is {job.state}, not delayed; only a delayed job can be promoted")
    return EXIT_FAILURE


async def _remove(args: argparse.Namespace, manager: QueueManager) -> int:
    engine = manager.get_queue(args.queue)
    confirm(args, f"Remove job {args.id} from {args.queue!r}?")
    await manager.connect()
    if not await engine.remove(args.id):
        raise JobNotFoundError(f"no job {args.id!r} in queue {args.queue!r}")
    _say(args, f"removed job {args.id} from {args.queue!r}")
    return EXIT_OK


async def _clean(args: argparse.Namespace, manager: QueueManager) -> int:
    manager.get_queue(args.queue)
    limit = f"up to {args.limit} " if args.limit else ""
    grace = format_duration(args.grace)
    confirm(args, f"Remove {limit}{args.state} jobs older than {grace} from {args.queue!r}?")
    removed = await manager.clean_queue(args.queue, args.grace * 1000, args.limit, args.state)
    print_json({"removed": removed}) if args.json else out("\n".join(removed)) if removed else None
    _say(args, f"removed {len(removed)} {args.state} job(s) older than {grace} from {args.queue!r}")
    return EXIT_OK


async def _drain(args: argparse.Namespace, manager: QueueManager) -> int:
    manager.get_queue(args.queue)
    what = "waiting and delayed" if args.delayed else "waiting"
    confirm(args, f"Remove every {what} job of {args.queue!r}?")
    count = await manager.drain_queue(args.queue, args.delayed)
    if args.json:
        print_json({"removed": count})
    _say(args, f"removed {count} {what} job(s) from {args.queue!r}")
    return EXIT_OK


async def _obliterate(args: argparse.Namespace, manager: QueueManager) -> int:
    engine = manager.get_queue(args.queue)
    confirm(args, f"Remove queue {args.queue!r} and ALL its jobs?")
    await manager.connect()
    try:
        count = await engine.obliterate(args.force)
    except CortexflowError as exc:
        if args.force or isinstance(exc, UsageError):
            raise
        raise CortexflowError(f"{exc} (pass --force to obliterate it anyway)") from None
    if args.json:
        print_json({"removed": count})
    _say(args, f"obliterated {args.queue!r}: {count} job(s) removed")
    return EXIT_OK
