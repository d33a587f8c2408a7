"""`cortexflow` command line: parse, call one function, render, exit code.

Each command group lives in its own module with ``register(subparsers, parents)``; heavy
imports happen inside the command functions so `cortexflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from cortexflow import __version__
from cortexflow.cli._common import global_options, run_command

# Modules that add subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "cortexflow.cli.config_cmds",  # validate, schema, config, graph, init
    "cortexflow.cli.run_cmds",  # up, worker, status
    "cortexflow.cli.ops_cmds",  # enqueue, stats, health, pause, resume, jobs, job, ...
    "cortexflow.cli.schedule_cmds",  # schedules [trigger NAME]
    "cortexflow.cli.monitor_cmds",  # events, dashboard
)


class _Parser(argparse.ArgumentParser):
    """Options anywhere among the arguments (`enqueue q --priority 5 file.json`), with a
    usage error that says where to look.

    argparse alone fills positionals in one pass, so an option between two positionals ends
    the first group and the rest become "unrecognized arguments"; a subcommand's parser
    parses intermixed instead (the top parser cannot: it holds the subcommands).
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or any(
            isinstance(a, argparse._SubParsersAction) for a in self._actions
        ):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.write(f"Run `{self.prog} --help` for the options.\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cortexflow",
        description="Declarative job-queue runner: queues.yaml -> taskiq workers on Redis/Valkey.",
    )
    parser.add_argument("--version", action="version", version=f"cortexflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parents = [global_options()]
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub, parents)
    return parser


def _exit_on_signal(signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C does, so `with` blocks run: a command leaves the embedded server it
    # started for its own length stopped, not orphaned (`up` and `worker` install their own).
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # kill, or the terminal closed
        signal.signal(sig, _exit_on_signal)
    return run_command(args)
