"""The console commands of README.md and docs/*.md run as shown, offline, on the embedded server.

What is a command: in a ```console block, a line starting with ``$ `` (a trailing ``\\`` joins
the next line), the lines up to the next ``$ `` being its output; in a ```bash / ```sh block,
every line that is not blank or a ``#`` comment. A trailing ``  # comment`` is dropped. Other
fences (a bare ``` holds a synopsis or a log) are not commands.

The commands of one document run in order, each in a shell of its own (an ``export`` does not
carry over), in one scratch folder: a copy of the shipped queues.yaml and its schemas, or for
README.md an empty folder (its walkthrough starts with `cortexflow init`). No REDIS_URL and no
CORTEXFLOW_FILE: every cortexflow command uses the folder's embedded server.

A command fails the test with a traceback, or with a non-zero exit the document does not show:
it shows one when the command's output has an ``error:`` line. A document marks what the test
needs to know with a comment before a block:

- ``<!-- docs-test: skip (reason) -->``: the block is not run;
- ``<!-- docs-test: write PATH -->``: the block's text is written to PATH (the file the text
  around it tells the reader to write).

``$ cat FILE`` with its output shown writes FILE (when the folder has none): the document shows
the file it uses. What cannot run offline or at all here is in SKIP, each with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cortexflow.embedded import DataFolder, terminate_pid
from tests.helpers.procs import clean_env
from tests.helpers.project import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|write)\b\s*(.*?)\s*-->\s*\n\s*$")
SHOWN_ERROR = re.compile(r"^([\w .-]+: )?error:", re.M)

# (document, or "" for any; pattern searched in the command; why it does not run here). Every
# entry must still match a command (test_every_skip_is_used).
SKIP: list[tuple[str, str, str]] = [
    ("", r"pip install|make check", "installs packages from the network, or runs the suite"),
    (
        "",
        r"\bcortexflow (up|worker|dashboard)\b|\bcortexflow events \S+$|--watch",
        "runs until stopped: tests/cli/test_default_path.py starts it and stops it",
    ),
    ("", r"^curl ", "talks to a running dashboard"),
    ("", r"--wait\b", "waits for a worker to run the job; none runs here"),
    ("", r"@db\.internal", "a host of the example's network"),
    ("", r"<\w+>", "a placeholder for the reader to fill in"),
    ("docs/cli.md", r"\bevents\.jsonl\b", "an input file the page does not show"),
    (
        "docs/cli.md",
        r"^cortexflow (job|retry) notifications 7c1d$",
        "7c1d is failed only once a worker ran it (the page's `cortexflow up`); none runs here",
    ),
    ("docs/schedules.md", r"schedules trigger", "needs a schedule `cortexflow up` stored"),
]


@dataclass
class Command:
    doc: str
    line: int
    text: str
    output: str | None  # None: the document shows none (a bash block)

    @property
    def shows_failure(self) -> bool:
        return self.output is not None and bool(SHOWN_ERROR.search(self.output))


@dataclass
class Write:
    doc: str
    line: int
    path: str
    text: str


Step = Command | Write


def _strip_comment(line: str) -> str:
    return line.split("  #", maxsplit=1)[0].rstrip()


def steps(doc: Path) -> list[Step]:
    """The commands and files of ``doc``, in order, skipped blocks left out."""
    text = doc.read_text()
    name = str(doc.relative_to(REPO))
    found: list[Step] = []
    for m in FENCE.finditer(text):
        lang, body = m.group(1), m.group(2)
        first = text.count("\n", 0, m.start(2)) + 1  # the block's first line, 1-based
        marker = MARKER.search(text, 0, m.start())
        marker = marker if marker and marker.end() == m.start() else None
        if marker and marker.group(1) == "skip":
            continue
        if marker and marker.group(1) == "write":
            found.append(Write(name, first, marker.group(2), body))
            continue
        if lang == "console":
            found.extend(_console(name, first, body))
        elif lang in ("bash", "sh", "shell"):
            found.extend(_script(name, first, body))
    return found


def _console(doc: str, first: int, body: str) -> list[Command]:
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        start = i
        text = lines[i][2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + lines[i].strip()
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        commands.append(Command(doc, first + start, _strip_comment(text), "\n".join(output)))
    return commands


def _script(doc: str, first: int, body: str) -> list[Command]:
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        start, text = i, lines[i].strip()
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + lines[i].strip()
        i += 1
        if text and not text.startswith("#"):
            commands.append(Command(doc, first + start, _strip_comment(text), None))
    return commands


def skip_reason(command: Command) -> str | None:
    for doc, pattern, reason in SKIP:
        if doc in ("", command.doc) and re.search(pattern, command.text):
            return reason
    return None


def env() -> dict[str, str]:
    """As after `. .venv/bin/activate`, with nothing pointing at a server or a file."""
    extra = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return {k: v for k, v in clean_env(extra).items() if not k.startswith("CORTEXFLOW_")}


def scratch(doc: Path, folder: Path) -> Path:
    """README.md starts from an empty folder; the pages from the shipped queues.yaml."""
    folder.mkdir()
    if doc.name != "README.md":
        shutil.copy(REPO / "queues.yaml", folder / "queues.yaml")
        shutil.copytree(REPO / "schemas", folder / "schemas")
    return folder


def _has_commands(doc: Path) -> bool:
    return any(isinstance(s, Command) and skip_reason(s) is None for s in steps(doc))


def test_the_docs_have_console_commands() -> None:
    readme = [s.text for s in steps(REPO / "README.md") if isinstance(s, Command)]
    assert "cortexflow init" in readme and "cortexflow stats" in readme
    cli = [s for s in steps(REPO / "docs" / "cli.md") if isinstance(s, Command)]
    assert any(s.shows_failure for s in cli) and any(not s.shows_failure for s in cli)


def test_every_skip_is_used() -> None:
    """A SKIP entry that matches no command any more hides nothing: remove it."""
    commands = [s for d in DOCS for s in steps(d) if isinstance(s, Command)]
    for doc, pattern, reason in SKIP:
        used = any(doc in ("", c.doc) and re.search(pattern, c.text) for c in commands)
        assert used, f"unused: {doc} {pattern} ({reason})"


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if _has_commands(d)], ids=lambda d: str(d.relative_to(REPO))
)
@pytest.mark.slow
def test_console_commands_run(doc: Path, tmp_path: Path) -> None:
    folder = scratch(doc, tmp_path / "work")
    ran = last = 0
    try:
        for step in steps(doc):
            where = f"{step.doc}:{step.line}"
            if isinstance(step, Write):
                target = folder / step.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.text)
                continue
            if skip_reason(step) is not None:
                continue
            if step.text == "echo $?" and step.output:  # each command has a shell of its own
                assert last == int(step.output), f"{where}: the page shows exit {step.output}"
                continue
            cat = re.fullmatch(r"cat (\S+)", step.text)
            if cat and step.output and not (folder / cat.group(1)).exists():
                (folder / cat.group(1)).write_text(step.output + "\n")
            proc = subprocess.run(["bash", "-c", step.text], cwd=folder, env=env(),
                                  capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            shown = f"{where}: $ {step.text}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stdout + proc.stderr, shown
            if step.shows_failure:
                assert proc.returncode != 0, (
                    f"the page shows an error, the command did not:\n{shown}"
                )
            else:
                assert proc.returncode == 0, shown
            last = proc.returncode
            ran += 1
        assert ran, f"{doc.name}: no command ran"
    finally:
        # Each command stops the embedded server it started; a leftover is a bug, and killed.
        state = DataFolder(folder / ".cortexflow").read_state()
        if state is not None:
            terminate_pid(state.pid)
    assert state is None, f"{doc.name}: the embedded server outlived the commands: {state}"
