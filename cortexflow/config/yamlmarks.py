"""YAML text -> plain data plus the line and column of every key and value.

PyYAML composes the node tree (with marks); this module turns it into dicts, lists and scalars
itself, so nothing but plain data is ever constructed: any tag outside the core schema
(``!!python/object``, ``!!binary``, ``!custom``) is an error, never a call.

It also closes PyYAML's traps:
- duplicate keys are errors (PyYAML silently keeps the last one);
- scalars resolve by YAML 1.2's core schema: ``on``/``no`` stay strings, ``1:30`` is not 90;
- aliases are followed within a budget of nodes (a "billion laughs" document is refused quickly);
- nesting deeper than MAX_DEPTH is refused (no RecursionError).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cortexflow.config.diagnostics import Diagnostic
from cortexflow.config.interpolate import InterpolationError, interpolate, needs_interpolation

PathT = tuple[str | int, ...]
MAX_NODES = 20_000
MAX_DEPTH = 64

_T = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = _T + "str", _T + "int", _T + "float", _T + "bool", _T + "null"
_MAP, _SEQ, _MERGE = _T + "map", _T + "seq", _T + "merge"

# YAML 1.2 core schema (what yaml-language-server uses too).
_CORE: list[tuple[str, re.Pattern[str], list[str]]] = [
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    (_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")),
    (
        _FLOAT,
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    ),
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (_MERGE, re.compile(r"^<<$"), ["<"]),
]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ComposeLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Only composes (never constructs); resolves plain scalars by the YAML 1.2 core schema."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _tag, _regexp, _first in _CORE:
    _ComposeLoader.add_implicit_resolver(_tag, _regexp, _first)


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class NodeMarks:
    value: Mark
    key: Mark | None = None  # where the key is, for a value inside a mapping


@dataclass
class Document:
    """Plain data, where each path sits in the file, and the paths already reported as broken."""

    data: Any
    marks: dict[PathT, NodeMarks] = field(default_factory=dict)
    broken: set[PathT] = field(default_factory=set)

    def mark(self, path: PathT, *, key: bool = False) -> Mark:
        """Mark of ``path`` (its key if ``key`` and it has one), else of its nearest ancestor."""
        for n in range(len(path), -1, -1):
            marks = self.marks.get(path[:n])
            if marks is not None:
                if key and marks.key is not None and n == len(path):
                    return marks.key
                return marks.value
        return Mark(1, 1)

    def is_broken(self, path: PathT) -> bool:
        return any(path[:n] in self.broken for n in range(len(path) + 1))


def dotted(path: PathT) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


def _mark(m: Any) -> Mark:
    return Mark(m.line + 1, m.column + 1)


class _Budget(Exception):
    def __init__(self, node: yaml.Node, path: PathT, reason: str, code: str) -> None:
        self.code = code
        self.node = node
        self.path = path
        self.reason = reason


def compose(text: str, file: str) -> tuple[yaml.Node | None, list[Diagnostic]]:
    """Parse ``text`` into a node tree, or a yaml.syntax diagnostic."""
    loader = _ComposeLoader(text)
    try:
        return loader.get_single_node(), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed quote or bracket: point at where it opened
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        problem = exc.problem or "invalid YAML"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = "found a tab character; YAML indents with spaces only"
        if exc.context and exc.context_mark is not None:
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        return None, [
            Diagnostic(file, line, col, "error", "yaml.syntax", "", problem, _syntax_hint(problem))
        ]
    except yaml.YAMLError as exc:  # ReaderError: bad characters in the stream
        return None, [Diagnostic(file, 1, 1, "error", "yaml.syntax", "", str(exc), None)]
    except RecursionError:
        return None, [
            Diagnostic(file, 1, 1, "error", "yaml.depth", "", "the YAML is nested too deeply", None)
        ]
    finally:
        loader.dispose()


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if 0 <= line < len(lines) else ""


def _syntax_hint(problem: str) -> str | None:
    if "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return 'quote values that contain ": ", and check the indentation of the line'
    if "expected a single document" in problem:
        return "queues.yaml holds one document: remove the extra `---`"
    return None


def to_document(
    root: yaml.Node | None, file: str, env: Mapping[str, str]
) -> tuple[Document, list[Diagnostic]]:
    """Turn a composed node tree into a Document, interpolating ``${VAR}`` in string values."""
    conv = _Converter(file, env)
    doc = Document(None)
    if root is None:
        return doc, []
    conv.doc = doc
    try:
        doc.data = conv.convert(root, (), None, 0)
    except _Budget as exc:
        doc.data = None
        doc.broken.add(())
        # Aliases leave no node behind: point at the top-level key whose value blew up.
        mark = doc.mark(exc.path[:1], key=True) if exc.path else _mark(exc.node.start_mark)
        return doc, [
            Diagnostic(
                file,
                mark.line,
                mark.column,
                "error",
                exc.code,
                dotted(exc.path[:1]),
                exc.reason,
                "queues.yaml needs no more than a few thousand values"
                if exc.code == "yaml.alias-bomb"
                else "queues.yaml nests a few levels deep at most",
            )
        ]
    return doc, conv.diagnostics


class _Converter:
    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.nodes = 0
        self.diagnostics: list[Diagnostic] = []
        self.doc = Document(None)

    def report(
        self, node: yaml.Node, path: PathT, code: str, message: str, hint: str | None = None
    ) -> None:
        m = _mark(node.start_mark)
        self.diagnostics.append(
            Diagnostic(self.file, m.line, m.column, "error", code, dotted(path), message, hint)
        )
        self.doc.broken.add(path)

    def convert(self, node: yaml.Node, path: PathT, key: yaml.Node | None, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Budget(
                node,
                path,
                f"the document expands to more than {MAX_NODES} values through "
                'aliases (a "billion laughs" document?)',
                "yaml.alias-bomb",
            )
        if depth > MAX_DEPTH:
            raise _Budget(
                node, (), f"the document is nested more than {MAX_DEPTH} levels deep", "yaml.depth"
            )
        if path not in self.doc.marks:
            self.doc.marks[path] = NodeMarks(
                _mark(node.start_mark), _mark(key.start_mark) if key else None
            )
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                return self._bad_tag(node, path)
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                return self._bad_tag(node, path)
            return [
                self.convert(item, (*path, i), None, depth + 1) for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

    def _bad_tag(self, node: yaml.Node, path: PathT) -> None:
        tag = node.tag.replace(_T, "!!")
        self.report(
            node,
            path,
            "yaml.tag",
            f"the tag {tag} is not allowed: queues.yaml holds plain "
            "data only (strings, numbers, booleans, lists, mappings)",
            "remove the tag; nothing in queues.yaml is ever constructed as an object",
        )

    def _mapping(self, node: yaml.MappingNode, path: PathT, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (
                _STR,
                _INT,
                _FLOAT,
                _BOOL,
                _NULL,
            ):
                self.report(
                    key_node,
                    path,
                    "yaml.key",
                    "keys must be plain strings",
                    "write the key as a plain word, e.g. concurrency:",
                )
                continue
            name = str(key_node.value)
            if name in out:
                first = self.doc.marks[(*path, name)].key or self.doc.marks[(*path, name)].value
                m = _mark(key_node.start_mark)
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        m.line,
                        m.column,
                        "error",
                        "yaml.duplicate-key",
                        dotted((*path, name)),
                        f"duplicate key {json.dumps(name)} (first defined at line {first.line})",
                        "keep one of them; YAML does not merge repeated keys",
                    )
                )
                continue
            out[name] = self.convert(value_node, (*path, name), key_node, depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for src in sources:
                value = self.convert(src, (*path, "<<"), None, depth + 1)
                if not isinstance(value, dict):
                    self.report(
                        src, path, "yaml.merge", "<< merges a mapping (or a list of mappings) only"
                    )
                    continue
                for k, v in value.items():
                    out.setdefault(k, v)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: PathT) -> Any:
        text = str(node.value)
        tag = node.tag
        if tag == _STR:
            if not needs_interpolation(text):
                return text
            try:
                text = interpolate(text, self.env)
            except InterpolationError as exc:
                self.report(node, path, exc.code, str(exc), exc.hint)
                return None
            if not node.style:  # plain (None in PyYAML, "" in libyaml): resolve as if written
                tag = resolve_plain(text)
            else:
                return text
        try:
            value = _construct(tag, text)
        except ValueError:
            if tag in (_INT, _FLOAT, _BOOL, _NULL):
                self.report(
                    node, path, "yaml.tag", f"{text!r} is not a valid {tag.replace(_T, '')}"
                )
                return None
            return self._bad_tag(node, path)
        if isinstance(value, float) and not math.isfinite(value):
            self.report(node, path, "yaml.float", f"{text} is not allowed: numbers must be finite")
            return None
        return value


def resolve_plain(text: str) -> str:
    for tag, regexp, first in _CORE:
        if tag != _MERGE and (text[:1] in first if text else "" in first) and regexp.match(text):
            return tag
    return _STR


def _construct(tag: str, text: str) -> Any:
    if tag == _STR:
        return text
    if tag == _NULL:
        if text not in ("", "~", "null", "Null", "NULL"):
            raise ValueError(text)
        return None
    if tag == _BOOL:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if tag == _INT:
        t = text.strip()
        if t.startswith(("0o", "0x")):
            return int(t[2:], 8 if t[1] == "o" else 16)
        return int(t, 10)
    if tag == _FLOAT:
        t = text.strip().lower()
        if t.endswith(".inf"):
            return float("-inf") if t.startswith("-") else float("inf")
        if t == ".nan":
            return float("nan")
        return float(t)
    raise ValueError(tag)
