"""No doc cites a document that a clone of this repository does not have.

A reader of a clone has this repository and public sources, nothing else: no design notes kept
beside it, no issue tracker of its own. So a statement stands on its own or points to a file
here, and its evidence (a measurement, a test) is in the repository too.

Where: README.md, CHANGELOG.md, every text file under docs/, and the Markdown of bench/,
examples/ and schemas/; the comments and docstrings of every Python file under cortexflow/,
bench/ and examples/; the comments of cortexflow's Lua scripts, templates, CSS and JS;
cortexflow's JSON files, the YAML files (comments and descriptions) and pyproject.toml's comments.
The comments and docstrings of tests/ (and its Markdown and YAML) are checked for outside
documents (the first two kinds below), not for issue numbers.

What counts as citing an outside document:

- a design or style document by name: ``DESIGN.md``, ``STYLE.md``, or ``DESIGN`` / ``STYLE``
  as an upper-case word (``as DESIGN asks``, ``DESIGN §3``);
- a path into a tree beside or outside the repository: ``../shared``, a path starting with
  ``shared/`` or ``notes/``; and in Markdown, a relative link whose target is not a file or
  folder of the repository (``[x](../../notes/a.md)``);
- an issue or pull request of this project by number: ``issue 15``, ``issues 14 and 15``,
  ``issue #15``, ``(#15)``, ``#15``.

What does not: a numbered issue of another, public project, written with that project's name
right before the number (``taskiq-redis #127``, ``celery#9835``, ``redis/redis-py#3123``,
``redis-py issue 3123``) or as a full URL. A project name is an ``owner/repo`` pair, a name
with a hyphen, dot, underscore or digit in it (``redis-py``, ``taskiq-redis``), or one of the
one-word names in PUBLIC_PROJECTS. Numbers that are not references are not matched: ``1#2``
(a cron field), ``&#10;``, anchors (``#footprint``) and CSS colours (CSS is read for comments
only).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# One-word names of public projects whose issues the docs may cite as "name #N".
PUBLIC_PROJECTS = {
    "anyio", "arq", "bullmq", "celery", "cpython", "cronsim", "dramatiq", "hiredis", "ioredis",
    "kombu", "orjson", "pydantic", "python", "redis", "rq", "saq", "starlette", "taskiq",
    "uvicorn", "uvloop", "valkey",
}  # fmt: skip

DOCUMENT = re.compile(
    r"(?i:\b(?:design|style)\.md\b)"
    r"|\b(?:DESIGN|STYLE)\b"
    r"|(?:\.\./)+shared\b"
    r"|(?<![\w./-])(?:shared|notes)/[\w.-]"
)
# "issue 15", "issues 14 and 15", "issue #15", "PR 3", "(#15)", "#15" - and what comes before it
NUMBERED = re.compile(
    r"(?P<before>[\w./-]*)(?P<gap>\s?)"
    r"(?P<ref>(?i:\b(?:issues?|pull requests?|PRs?)\s*#?\d+)|(?<![\w&#/])#\d+\b)"
)
PROJECT_NAME = re.compile(r"[\w.-]+/[\w.-]+|[A-Za-z][\w.-]*[-._\d][\w.-]*")
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _names_a_project(word: str) -> bool:
    word = word.rstrip(".")
    return bool(word) and (
        word.lower() in PUBLIC_PROJECTS or PROJECT_NAME.fullmatch(word) is not None
    )


def citations(text: str, *, numbers: bool = True) -> list[str]:
    """The outside documents ``text`` cites, as the matched words."""
    found = [m.group(0) for m in DOCUMENT.finditer(text)]
    for m in NUMBERED.finditer(text) if numbers else ():
        if not _names_a_project(m.group("before")):
            found.append(m.group("ref"))
    return found


def _python_prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each comment and docstring of a Python file."""
    source = path.read_text()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None and node.body:
                yield node.body[0].lineno, doc


COMMENTS = {
    ".lua": re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.S),
    ".html": re.compile(r"<!--.*?-->|\{#.*?#\}", re.S),
    ".css": re.compile(r"/\*.*?\*/", re.S),
    ".js": re.compile(r"/\*.*?\*/|(?<![:\"'\\])//[^\n]*", re.S),
    ".yaml": re.compile(r"(?:^|\s)#[^\n]*|\bdescription:[^\n]*"),
    ".toml": re.compile(r"(?:^|\s)#[^\n]*"),
}


def _prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of what a reader reads as prose in ``path``."""
    if path.suffix == ".py":
        yield from _python_prose(path)
        return
    text = path.read_text(errors="replace")
    pattern = COMMENTS.get(path.suffix)
    if pattern is None:  # Markdown, JSON, text: all of it
        yield 1, text
        return
    for m in pattern.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m.group(0)


def _line_of(text: str, needle: str, first: int) -> int:
    at = text.find(needle)
    return first + (text.count("\n", 0, at) if at >= 0 else 0)


def checked_files() -> list[Path]:
    def under(folder: str, *suffixes: str) -> list[Path]:
        return [
            p
            for p in (REPO / folder).rglob("*")
            if p.is_file()
            and p.suffix in suffixes
            and not {"node_modules", "__pycache__", ".venv-arq"} & set(p.parts)
        ]

    files = [REPO / "README.md", REPO / "CHANGELOG.md", *under("docs", ".md", ".txt")]
    files += under("cortexflow", ".py", ".lua", ".html", ".css", ".js", ".json", ".md")
    for folder in ("bench", "examples"):
        files += under(folder, ".py", ".md")
    files += [*under("schemas", ".json", ".md"), *REPO.glob("*.yaml"), *REPO.glob("*.toml")]
    files += under("examples", ".yaml")
    return sorted(set(files))


def _test_modules() -> list[Path]:
    me = Path(__file__).resolve()  # its examples are citations on purpose
    return sorted(
        p
        for p in (REPO / "tests").rglob("*")
        if p.suffix in {".py", ".md", ".yaml"} and p != me and "__pycache__" not in p.parts
    )


def outside_citations(files: list[Path], *, numbers: bool = True) -> list[str]:
    """``path:line: word`` for every citation of an outside document in ``files`` (with
    ``numbers=False``, of a document by name or path only, not of an issue number)."""
    cited = []
    for path in files:
        rel = path.relative_to(REPO)
        for line, text in _prose(path):
            for word in citations(text, numbers=numbers):
                cited.append(f"{rel}:{_line_of(text, word, line)}: {word}")
    return cited


def broken_links(files: list[Path]) -> list[str]:
    """``path: target`` for every relative Markdown link that leaves the repository or names a
    file it does not have."""
    bad = []
    for path in files:
        if path.suffix != ".md":
            continue
        for m in MARKDOWN_LINK.finditer(path.read_text()):
            target = m.group(1).split("#", 1)[0]
            if not target or re.match(r"[a-z][\w+.-]*:", target):  # an anchor, a URL, mailto:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                bad.append(f"{path.relative_to(REPO)}: {m.group(1)}")
    return bad


def test_no_doc_cites_an_outside_document() -> None:
    files = checked_files()
    assert REPO / "docs" / "engine.md" in files
    cited = outside_citations(files) + outside_citations(_test_modules(), numbers=False)
    assert not cited, "cites a document a clone does not have:\n" + "\n".join(cited)


def test_every_relative_link_stays_in_the_repository() -> None:
    bad = broken_links(checked_files())
    assert not bad, "links to no file of this repository:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "text",
    [
        "extends it by subclassing, as DESIGN asks",
        "see DESIGN §3",
        "STYLE.md says so",
        "as design.md asks",
        "../shared/notes/receiver.md",
        "the rule in shared/DESIGN.md",
        "notes/2026-11-30.md",
        "measured in issue 15",
        "issues 14 and 15",
        "Issue #21, item 7.5",
        "fixed (#42)",
        "see #12",
        "as PR 7 did",
    ],
)
def test_citations_are_found(text: str) -> None:
    assert citations(text)


@pytest.mark.parametrize(
    "text",
    [
        "redis-py 8's default of 5 s breaks longer blocking reads: taskiq-redis #127",
        "celery#9835",
        "redis/redis-py#3123",
        "a redis-py issue 3123 workaround",
        "BullMQ #2100",
        "https://github.com/taskiq-python/taskiq-redis/issues/127",
        "cron: `1#2` is the second Monday",
        "[the job hash](engine.md#the-job-hash)",
        "the shared rule (-f, $CORTEXFLOW_FILE)",
        "shared with every other job of its queue",
        "an issued token",
        "design decisions and style",
    ],
)
def test_public_sources_and_look_alikes_are_not_citations(text: str) -> None:
    assert citations(text) == []
