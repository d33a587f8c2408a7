"""The one loader of queues.yaml, for `validate`, `up`, `enqueue` and the Python API.

read -> YAML with marks (+ ``${VAR}``) -> JSON Schema -> semantic checks -> frozen Config.
Every stage collects diagnostics instead of stopping at the first problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cortexflow.config.build import build_config
from cortexflow.config.diagnostics import (
    Diagnostic,
    errors_of,
    exit_code,
    render_text,
    sort_diagnostics,
    summary,
)
from cortexflow.config.model import Config
from cortexflow.config.routes_check import route_diagnostics
from cortexflow.config.schema import load_schema
from cortexflow.config.schema_errors import schema_diagnostics
from cortexflow.config.semantic import check_semantics
from cortexflow.config.yamlmarks import compose, to_document
from cortexflow.errors import ConfigError

MAX_BYTES = 1_000_000


def check_config(
    path: str | Path,
    *,
    check_imports: bool = True,
    env: Mapping[str, str] | None = None,
) -> tuple[Config | None, list[Diagnostic]]:
    """Load and check queues.yaml; return (Config or None, every diagnostic sorted by line).

    The Config is None exactly when there is an error. Never raises for any file content.
    """
    path = Path(path)
    file = str(path)
    environ: Mapping[str, str] = os.environ if env is None else env
    text, problem = _read(path, file)
    if problem is not None:
        return None, [problem]
    assert text is not None
    root, diagnostics = compose(text, file)
    if diagnostics:
        return None, diagnostics
    doc, diagnostics = to_document(root, file, environ)
    if doc.data is None and not diagnostics:
        return None, [
            Diagnostic(
                file,
                1,
                1,
                "error",
                "schema.type",
                "",
                f"{file} is empty",
                "declare your queues under a queues: key (`cortexflow init` writes a starter)",
            )
        ]
    schema = load_schema()
    if not doc.is_broken(()):
        diagnostics += schema_diagnostics(doc, schema, file)
    semantic = check_semantics(doc, schema, file, path.parent, check_imports=check_imports)
    diagnostics = sort_diagnostics(
        [*diagnostics, *semantic.diagnostics, *route_diagnostics(doc, file)]
    )
    if errors_of(diagnostics):
        return None, diagnostics
    config = build_config(doc.data, path.absolute(), environ, semantic.payload_docs)
    return config, diagnostics


def load_config(
    path: str | Path,
    *,
    check_imports: bool = True,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Like check_config, but raise ConfigError (all diagnostics rendered) when invalid."""
    config, diagnostics = check_config(path, check_imports=check_imports, env=env)
    if config is None:
        file = str(path)
        message = render_text(diagnostics, summary(file, diagnostics))
        raise ConfigError(message, diagnostics=tuple(diagnostics), exit_code=exit_code(diagnostics))
    return config


def _read(path: Path, file: str) -> tuple[str | None, Diagnostic | None]:
    def fail(code: str, message: str, hint: str | None = None) -> tuple[None, Diagnostic]:
        return None, Diagnostic(file, None, None, "error", code, "", message, hint)

    if not path.exists():
        return fail(
            "file.missing",
            f"{file} not found",
            "create one with `cortexflow init`, or point -f / CORTEXFLOW_FILE at your queues.yaml",
        )
    if not path.is_file():
        return fail("file.unreadable", f"{file} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return fail("file.unreadable", f"cannot read {file}: {exc.strerror or exc}")
    if len(data) > MAX_BYTES:
        return None, Diagnostic(
            file,
            1,
            1,
            "error",
            "file.too-large",
            "",
            f"{file} is {len(data)} bytes; queues.yaml is limited to {MAX_BYTES}",
        )
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, Diagnostic(
            file,
            line,
            1,
            "error",
            "yaml.encoding",
            "",
            f"{file} is not UTF-8 text (byte {exc.start})",
            "save the file as UTF-8",
        )
