"""What every command shares: global options, output helpers, error -> exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortexflow import errors
from cortexflow.redact import _split_userinfo
from cortexflow.termsafe import escape_controls


def global_options(*, defaults: bool = True) -> argparse.ArgumentParser:
    """Options every subcommand takes (docs/cli.md).

    ``defaults=False`` is for a command's own subcommands (`schedules trigger`): argparse copies
    every value of a subparser's namespace over its parent's, so a default there would undo the
    option given before the subcommand (`schedules -f other.yaml trigger NAME`).
    """
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument(
        "-f",
        "--file",
        default=None,
        help="queues.yaml to use (default: $CORTEXFLOW_FILE or ./queues.yaml)",
    )
    g.add_argument(
        "--redis-url", default=None, help="Redis/Valkey URL (overrides queues.yaml and $REDIS_URL)"
    )
    g.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    g.add_argument("--no-color", action="store_true", help="no ANSI colours (also: NO_COLOR=1)")
    g.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr")
    if not defaults:
        for action in g._group_actions:
            action.default = argparse.SUPPRESS
    return p


def config_path(args: argparse.Namespace) -> Path:
    """-f, else $CORTEXFLOW_FILE, else ./queues.yaml: the API's rule (api/resolve.py)."""
    from cortexflow.api.resolve import config_file

    return config_file(args.file)


def out(text: str = "") -> None:
    """A line of data on stdout; control characters in it are shown, not obeyed."""
    sys.stdout.write(escape_controls(text) + "\n")


def err(text: str) -> None:
    """A message on stderr; control characters in it are shown, not obeyed."""
    sys.stderr.write(escape_controls(text) + "\n")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _has_password(url: str | None) -> bool:
    """Whether ``url`` holds a password (``user:pw@`` or a ``password=`` option).

    The userinfo is found by redact's rule, which knows that a ``unix://`` URL has it only before
    the socket's path: ``unix:///a@b:c/v.sock`` holds no password."""
    if not url:
        return False
    scheme, _sep, rest = url.partition("://")
    userinfo, at, _ = _split_userinfo(scheme, rest)
    return bool(at and ":" in userinfo) or "password=" in url.lower()


# The exit code of each error a command may end with: the first class that matches
# (docs/cli.md "Exit codes"); any other CortexflowError exits 1.
_EXIT_CODES: tuple[tuple[type[errors.CortexflowError], int], ...] = (
    (errors.DataFormatError, errors.EXIT_DATA_FORMAT),
    (errors.RedisAuthError, errors.EXIT_NOPERM),
    (errors.RedisUnavailableError, errors.EXIT_UNAVAILABLE),
    (errors.ServerFullError, errors.EXIT_TEMPFAIL),
    (errors.EvictionPolicyError, errors.EXIT_CONFIG),
    (errors.UsageError, errors.EXIT_USAGE),
)


def run_command(args: argparse.Namespace) -> int:
    """Call the command's function and map cortexflow's errors to messages and exit codes."""
    func: Callable[[argparse.Namespace], int] = args.func
    if _has_password(getattr(args, "redis_url", None)) and not getattr(args, "quiet", False):
        err(
            "warning: --redis-url holds a password, which `ps` shows to every user of this "
            "host; put the URL in REDIS_URL (or redis.url: ${REDIS_URL}) instead"
        )
    try:
        return func(args)
    except errors.ConfigError as exc:
        err(str(exc))
        return exc.exit_code
    except errors.CortexflowError as exc:
        err(f"error: {exc}")
        return next((c for cls, c in _EXIT_CODES if isinstance(exc, cls)), errors.EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as exc:
        return _refused(exc)


def _refused(exc: Exception) -> int:
    """A command the server refused (an ACL without access to cortexflow's keys, a read-only
    replica, OOM under noeviction) is the deployment's problem, not a bug: no traceback.
    Anything else is re-raised."""
    from redis.exceptions import OutOfMemoryError, RedisError

    if not isinstance(exc, RedisError):
        raise exc
    if isinstance(exc, OutOfMemoryError):  # a write other than an add (retry, pause, ...)
        err(f"error: {errors.ServerFullError(None, None)}")
        return errors.EXIT_TEMPFAIL
    err(
        f"error: Redis refused the command: {exc}. If the server uses ACLs, the user needs "
        "the keys of this prefix (e.g. `~{cortexflow:* ~{cortexflow}:*`) and the commands "
        "of @read @write @scripting @list @sortedset @hash @string @stream @connection."
    )
    return errors.EXIT_FAILURE


def _stdout_closed() -> int:
    """The reader of stdout went away (``cortexflow jobs Q | head -1``): that is the reader's
    choice, not an error, so exit 0 quietly. Point stdout at /dev/null first, or the flush at
    interpreter exit raises BrokenPipeError again and prints a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return errors.EXIT_OK
