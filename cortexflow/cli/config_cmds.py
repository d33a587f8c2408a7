"""`validate`, `schema`, `config`, `graph`, `init`: the commands about queues.yaml itself."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from cortexflow import errors
from cortexflow.cli._common import config_path, err, out, print_json


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        parents=parents,
        help="check queues.yaml: YAML, schema, units, handlers, payload schemas (for CI)",
        description="Check queues.yaml and report every problem as file:line:col. "
        "Exit 0 valid, 1 invalid, 2 missing file or bad usage.",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default=None,
        help="text (default), json, or github (::error annotations for GitHub Actions)",
    )
    p.add_argument(
        "--no-import-check",
        action="store_true",
        help="do not import the handlers (for CI without the application's dependencies)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", parents=parents, help="print the JSON Schema of queues.yaml")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "config",
        parents=parents,
        help="print the resolved configuration, defaults included (secrets redacted)",
    )
    p.add_argument("--no-import-check", action="store_true", help="do not import the handlers")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "graph",
        parents=parents,
        help="print the pipeline the queues' next: routes declare",
        description="Print every next: route (and join) of queues.yaml: one line per route, "
        "or a Mermaid / Graphviz dot drawing.",
    )
    p.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    p.add_argument(
        "--dead-letters",
        action="store_true",
        help="also draw each queue's edge to its dead_letter queue",
    )
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "init",
        parents=parents,
        help="write a starter queues.yaml (and tasks.py) here",
        description="Write a starter queues.yaml with an editor schema modeline, and a tasks.py "
        "with its handler if there is none. Never overwrites a file.",
    )
    p.add_argument(
        "path", nargs="?", default=None, help="where to write (default: -f / queues.yaml)"
    )
    p.set_defaults(func=cmd_init)


def cmd_validate(args: argparse.Namespace) -> int:
    from cortexflow.config import check_config
    from cortexflow.config.diagnostics import RENDERERS, exit_code, summary

    fmt = args.format or ("json" if args.json else "text")
    config, diagnostics = check_config(config_path(args), check_imports=not args.no_import_check)
    queue_count = len(config.queues) if config is not None else None
    line = summary(str(config_path(args)), diagnostics, queue_count)
    out(RENDERERS[fmt](diagnostics, line))
    return exit_code(diagnostics)


def cmd_schema(args: argparse.Namespace) -> int:
    from cortexflow.config.schema import packaged_schema_text

    out(packaged_schema_text().rstrip("\n"))
    return errors.EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from cortexflow.config import load_config
    from cortexflow.config.dump import config_to_dict, note_auto_processes

    config = load_config(config_path(args), check_imports=not args.no_import_check)
    if args.redis_url:
        config = dataclasses.replace(
            config, redis=dataclasses.replace(config.redis, url=args.redis_url)
        )
    data = config_to_dict(config)
    if args.json:
        print_json(data)
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
        out(note_auto_processes(text, config))
    return errors.EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from cortexflow.config import load_config
    from cortexflow.config.graph import RENDERERS

    config = load_config(config_path(args), check_imports=False)
    out(RENDERERS[args.format](config, args.dead_letters))
    return errors.EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from cortexflow.config.schema import packaged_schema_text
    from cortexflow.config.starter import STARTER_TASKS, starter_yaml

    target = Path(args.path) if args.path else config_path(args)
    if target.exists():
        err(
            f"error: {target} already exists; cortexflow init never overwrites a file. "
            f"Edit it, remove it, or write elsewhere: cortexflow init other.yaml"
        )
        return errors.EXIT_FAILURE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as fh:
            fh.write(starter_yaml())
    except OSError as exc:
        err(f"error: cannot write {target}: {exc.strerror or exc}")
        return errors.EXIT_FAILURE
    err(f"wrote {target}")
    schema_file = target.parent / "queues.schema.json"
    if not schema_file.exists():
        try:
            schema_file.write_text(packaged_schema_text(), encoding="utf-8")
            err(f"wrote {schema_file} (for the editor modeline at the top of {target.name})")
        except OSError as exc:
            err(f"warning: cannot write {schema_file}: {exc.strerror or exc}")
    tasks = target.parent / "tasks.py"
    if not tasks.exists():
        try:
            with tasks.open("x", encoding="utf-8") as fh:
                fh.write(STARTER_TASKS)
            err(f"wrote {tasks} (the handler of the starter queue)")
        except OSError as exc:
            err(f"warning: cannot write {tasks}: {exc.strerror or exc}")
    # Show the command as the user will type it: no -f for the file found without one.
    chosen = args.path or args.file
    err(f"next: cortexflow validate -f {target}" if chosen else "next: cortexflow validate")
    return errors.EXIT_OK
