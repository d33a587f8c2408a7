"""`up`, `worker`, `status`: the commands that run queues and show what runs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cortexflow import errors
from cortexflow.cli._common import config_path, err, out, print_json


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        parents=parents,
        help="run every queue's workers under the supervisor (or the named queues)",
        description="Validate queues.yaml, then run one worker process per (process, replica) "
        "(a process: one queue, or the queues that share it with `process:`), "
        "restarting them when they die. SIGTERM/SIGINT stop gracefully (a second one kills), "
        "SIGHUP reloads queues.yaml. With no Redis URL configured, an embedded server is "
        "started with its data in .cortexflow/ beside queues.yaml.",
    )
    p.add_argument("queues", nargs="*", metavar="QUEUE", help="run only these queues")
    p.add_argument(
        "--exit-on-fatal",
        action="store_true",
        help="stop everything and exit 1 when a queue goes FATAL (default: keep the others)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="text: `HH:MM:SS queue.N | line` (default); json: one object per line "
        "(default: logging.format of queues.yaml)",
    )
    p.set_defaults(func=cmd_up)

    _register_worker(sub, parents)

    p = sub.add_parser(
        "status",
        parents=parents,
        help="the processes of every running supervisor on this Redis; exit 1 if a queue is FATAL",
    )
    p.set_defaults(func=cmd_status)


def _register_worker(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        parents=parents,
        help="run queues' workers in this process, without a supervisor",
        description="Run the worker of one queue (for one-queue-per-container deployments), "
        "of several queues in one process (QUEUE QUEUE...), or of every queue of a worker "
        "process of queues.yaml (--process NAME). SIGTERM/SIGINT stop it gracefully within "
        "stop_timeout.",
    )
    p.add_argument("queues", nargs="*", metavar="QUEUE")
    p.add_argument(
        "--process",
        default=None,
        metavar="NAME",
        help="run every queue whose `process:` is NAME (a queue's own name for a queue "
        "without one)",
    )
    p.add_argument("--replica", type=int, default=None, help="replica number (for status)")
    p.add_argument(
        "--stop-timeout",
        default=None,
        metavar="DURATION",
        help='how long running jobs may take to finish on SIGTERM, e.g. "30s" '
        "(default: stop_timeout of queues.yaml)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="text: `LEVEL logger: message`; json: one object per line "
        "(default: logging.format of queues.yaml, else text)",
    )
    p.set_defaults(func=cmd_worker)


def cmd_up(args: argparse.Namespace) -> int:
    from cortexflow.config import load_config
    from cortexflow.logs import LogFormat, resolve_format
    from cortexflow.supervisor.logmux import LogSink
    from cortexflow.supervisor.up import UpOptions, run_up
    from cortexflow.termsafe import want_color

    path = config_path(args)
    # The one loader refuses an invalid file with validate's diagnostics before anything starts;
    # handlers are imported by the children, never by the supervisor (docs/supervisor.md).
    config = load_config(path, check_imports=False)
    flag = args.log_format or ("json" if args.json else None)
    fmt: LogFormat = resolve_format(flag, config.logging.format)
    sink = LogSink(
        out=sys.stdout,
        err=sys.stderr,
        fmt=fmt,
        color=fmt == "text" and want_color(args.no_color, sys.stdout),
    )
    options = UpOptions(queues=tuple(args.queues), exit_on_fatal=args.exit_on_fatal)

    def reload(p: Any) -> Any:
        return load_config(p, check_imports=False)

    return run_up(config, sink, options=options, loader=reload, redis_override=args.redis_url)


def cmd_worker(args: argparse.Namespace) -> int:
    from cortexflow.config import load_config
    from cortexflow.durations import DurationError, parse_duration
    from cortexflow.embedded import redis_endpoint
    from cortexflow.worker.env import ENV_PARENT_PID, ENV_REDIS_URL, ENV_REPLICA

    supervised = bool(os.environ.get(ENV_PARENT_PID))
    try:
        stop_timeout = parse_duration(args.stop_timeout) if args.stop_timeout else None
    except DurationError as exc:
        raise errors.UsageError(f"--stop-timeout: {exc}") from None
    try:
        config = load_config(config_path(args), check_imports=False)
    except errors.ConfigError as exc:
        err(str(exc))
        # Under `up`, a config the child cannot load is a config error: the queue goes FATAL.
        return errors.EXIT_CONFIG if supervised else exc.exit_code
    queues = _worker_queues(args, config)
    unknown = [q for q in queues if q not in config.queues]
    if unknown:
        if supervised:
            err(f"error: queue {unknown[0]!r} is not declared in {config.path}")
            return errors.EXIT_CONFIG
        config.queue(unknown[0])  # raises UsageError naming the known queues
    replica = args.replica
    if replica is None:
        replica = int(os.environ.get(ENV_REPLICA, "0") or 0)
    override = args.redis_url or os.environ.get(ENV_REDIS_URL) or None

    from cortexflow.logs import resolve_format
    from cortexflow.worker.main import run_worker

    log_format = resolve_format(args.log_format, config.logging.format)
    with redis_endpoint(config, override) as url:
        return run_worker(
            config,
            queues,
            redis_url=url,
            replica=replica,
            stop_timeout=stop_timeout,
            log_format=log_format,
        )


def _worker_queues(args: argparse.Namespace, config: Any) -> tuple[str, ...]:
    """The queues `worker` runs: those named, and those of ``--process`` (UsageError if
    neither, or for a process no queue names)."""
    queues = list(dict.fromkeys(args.queues))
    if args.process is not None:
        groups = config.process_groups()
        if args.process not in groups:
            known = ", ".join(sorted(groups)) or "(none)"
            raise errors.UsageError(
                f"no queue runs in process {args.process!r}; processes of "
                f"{config.path.name}: {known}"
            )
        queues += [q for q in groups[args.process] if q not in queues]
    if not queues:
        raise errors.UsageError("name the queues to run (QUEUE...) or --process NAME")
    return tuple(queues)


def cmd_status(args: argparse.Namespace) -> int:
    import asyncio

    from cortexflow.api.status import any_fatal, collect_status
    from cortexflow.cli.render import status_table
    from cortexflow.config import load_config
    from cortexflow.embedded import redis_endpoint

    config = load_config(config_path(args), check_imports=False)
    with redis_endpoint(config, args.redis_url) as url:
        rows = asyncio.run(collect_status(url, config.redis.prefix))
    if args.json:
        print_json(rows)
    elif rows:
        out(status_table(rows))
    else:
        err("no cortexflow supervisor is running against this Redis")
    return errors.EXIT_FAILURE if any_fatal(rows) else errors.EXIT_OK
