"""`cortexflow` command line: parse, call one function, render, exit code.

Each command group lives in its own module with ``register(subparsers, parents)``; heavy
imports happen inside the command functions so `cortexflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cortexflow import __version__
from cortexflow.cli._common import global_options, run_command

# Modules that add subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "cortexflow.cli.config_cmds",  # validate, schema, config, init
    "cortexflow.cli.run_cmds",  # up, worker, status
    "cortexflow.cli.ops_cmds",  # enqueue, stats, health, pause, resume, jobs, job, ...
    "cortexflow.cli.monitor_cmds",  # events, dashboard
)


class _Parser(argparse.ArgumentParser):
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)
