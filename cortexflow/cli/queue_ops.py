"""What the operations commands share: a QueueManager per command run, argument types that
parse at the edge, and the confirmation asked before destructive commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cortexflow.cli._common import config_path
from cortexflow.durations import DurationError, parse_duration
from cortexflow.errors import CortexflowError, UsageError

if TYPE_CHECKING:
    from cortexflow.api.manager import QueueManager

AsyncCommand = Callable[[argparse.Namespace, "QueueManager"], Awaitable[int]]


def with_manager(fn: AsyncCommand) -> Callable[[argparse.Namespace], int]:
    """Run ``fn(args, manager)`` in an event loop with a QueueManager for -f / --redis-url,
    closed afterwards. A connection lost mid-command becomes RedisUnavailableError (exit 69)."""

    def command(args: argparse.Namespace) -> int:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from cortexflow.api.manager import QueueManager
        from cortexflow.errors import RedisUnavailableError

        async def main() -> int:
            manager = QueueManager(config_path(args), args.redis_url)
            try:
                return await fn(args, manager)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise RedisUnavailableError(manager.url, str(exc)) from None
            finally:
                await manager.close()

        return asyncio.run(main())

    return command


def duration(text: str) -> float:
    """argparse type: "5s", "1m30s" -> seconds; the error says what a duration looks like."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low:,} to {high:,}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {value}")
        return value

    return parse


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask for confirmation (needed without a terminal)",
    )


def confirm(args: argparse.Namespace, question: str) -> None:
    """Ask ``question`` on the terminal unless --yes; refuse without a terminal to ask on."""
    if args.yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            f"`{args.command}` deletes jobs and cannot be undone: pass --yes to confirm "
            "(there is no terminal to ask on)"
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CortexflowError("aborted; nothing was changed")
