"""The loader's parts on their own: interpolation, YAML marks, importer, renderers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cortexflow.config.diagnostics import (
    Diagnostic,
    exit_code,
    render_github,
    render_json,
    render_text,
    summary,
)
from cortexflow.config.importer import ImportFromStringError, import_from_string, resolve_handler
from cortexflow.config.interpolate import InterpolationError, interpolate
from cortexflow.config.yamlmarks import Document, Mark, compose, to_document


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("plain", "plain"),
        ("${A}", "1"),
        ("x${A}y${B}z", "x1y2z"),
        ("${NOPE:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY}", ""),
        ("${A:-dflt}", "1"),
        ("${NOPE:-}", ""),
        ("${NOPE:-a:b}", "a:b"),
        ("$$", "$"),
        ("$${A}", "${A}"),
        ("pa$word", "pa$word"),
        ("cost $5", "cost $5"),
    ],
)
def test_interpolate(text: str, out: str) -> None:
    assert interpolate(text, {"A": "1", "B": "2", "EMPTY": ""}) == out


@pytest.mark.parametrize(
    ("text", "code"),
    [("${NOPE}", "env.unset"), ("${", "env.syntax"), ("${1A}", "env.syntax"), ("${A B}", "env.syntax"),
     ("${}", "env.syntax")],
)  # fmt: skip
def test_interpolate_errors(text: str, code: str) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate(text, {})
    assert info.value.code == code


def _doc(text: str, env: dict[str, str] | None = None) -> tuple[Document, list[Diagnostic]]:
    root, diags = compose(text, "f.yaml")
    assert not diags
    doc, diags = to_document(root, "f.yaml", env or {})
    return doc, diags


def test_marks_of_keys_and_values() -> None:
    doc, diags = _doc("a:\n  bb: 1\n  cc: [x, {d: y}]\n")
    assert not diags
    assert doc.data == {"a": {"bb": 1, "cc": ["x", {"d": "y"}]}}
    assert doc.mark(("a", "bb"), key=True) == Mark(2, 3)
    assert doc.mark(("a", "bb")) == Mark(2, 7)
    assert doc.mark(("a", "cc", 1, "d")) == Mark(3, 15)
    assert doc.mark(("a", "zz")) == Mark(2, 3)  # the nearest ancestor


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("-2", -2), ("0x1f", 31), ("0o17", 15), ("1.5", 1.5), ("1e3", 1000.0), ("true", True),
     ("False", False), ("null", None), ("~", None), ("", None), ("yes", "yes"), ("on", "on"),
     ("1:30", "1:30"), ("010", 10), ("'1'", "1"), ("!!str 1", "1"), ("!!int '7'", 7),
     ("5s", "5s"), (".inf", None)],
)  # fmt: skip
def test_yaml_1_2_core_scalars(text: str, value: object) -> None:
    doc, diags = _doc(f"k: {text}\n")
    assert doc.data == {"k": value}
    assert bool(diags) == (text == ".inf")


def test_keys_stay_text() -> None:
    doc, _ = _doc("on: 1\n1: 2\nnull: 3\n")
    assert doc.data == {"on": 1, "1": 2, "null": 3}


def test_complex_key_refused() -> None:
    _, diags = _doc("? [a, b]\n: 1\n")
    assert [d.code for d in diags] == ["yaml.key"]


def test_bad_explicit_int() -> None:
    _, diags = _doc("k: !!int abc\n")
    assert [d.code for d in diags] == ["yaml.tag"]


def test_merge_of_a_scalar_refused() -> None:
    _, diags = _doc("k:\n  <<: 5\n  a: 1\n")
    assert [d.code for d in diags] == ["yaml.merge"]


def test_importer_kinds(tmp_path: Path) -> None:
    (tmp_path / "cf_unit_mod.py").write_text(
        "x = 1\ndef f():\n    pass\nclass K:\n    def g(self): pass\n"
    )
    try:
        assert import_from_string("cf_unit_mod:f", search_path=tmp_path).__name__ == "f"
        assert import_from_string("cf_unit_mod:K.g").__name__ == "g"
        assert resolve_handler("json:dumps") is json.dumps
        cases = {
            "nocolon": "format",
            "cf_unit_mod:": "format",
            "cf_no_such_mod_q:f": "module-not-found",
            "json.nosuchsub:f": "module-not-found",
            "cf_unit_mod:nope": "attribute",
            "cf_unit_mod:K.nope": "attribute",
        }
        for ref, kind in cases.items():
            with pytest.raises(ImportFromStringError) as info:
                import_from_string(ref)
            assert info.value.kind == kind, ref
        with pytest.raises(ImportFromStringError) as info:
            resolve_handler("cf_unit_mod:x")
        assert info.value.kind == "not-callable"
        with pytest.raises(ImportFromStringError) as info:
            resolve_handler("cf_unit_mod:K")
        assert info.value.kind == "not-callable"
        assert sys.path[0] == str(tmp_path.resolve())
    finally:
        sys.modules.pop("cf_unit_mod", None)
        sys.path.remove(str(tmp_path.resolve()))


def test_submodule_typo_suggests_the_real_one() -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("cortexflow.queues.email_sendin:handle")
    assert info.value.kind == "module-not-found"
    assert info.value.hint == 'did you mean "cortexflow.queues.email_sending"?'


D1 = Diagnostic(
    "q.yaml", 3, 5, "error", "schema.type", "queues.a.concurrency", 'expected x, got "y"', "a hint"
)
D2 = Diagnostic("q.yaml", None, None, "error", "file.missing", "", "q.yaml not found")


def test_renderers() -> None:
    line = summary("q.yaml", [D1])
    assert line == "1 error in q.yaml"
    assert render_text([D1], line) == (
        'q.yaml:3:5: error[schema.type] queues.a.concurrency: expected x, got "y"\n  hint: a hint\n'
        "1 error in q.yaml"
    )
    doc = json.loads(render_json([D1], line))
    assert doc["valid"] is False
    assert doc["diagnostics"][0] == {
        "file": "q.yaml", "line": 3, "column": 5, "severity": "error", "code": "schema.type",
        "path": "queues.a.concurrency", "message": 'expected x, got "y"', "hint": "a hint",
    }  # fmt: skip
    assert render_github([D1, D2], line).splitlines() == [
        '::error file=q.yaml,line=3,col=5,title=schema.type::queues.a.concurrency: expected x, got "y"%0Ahint: a hint',
        "::error file=q.yaml,title=file.missing::q.yaml not found",
        "1 error in q.yaml",
    ]
    assert render_text([D2], "x").splitlines()[0] == "q.yaml: error[file.missing] q.yaml not found"


def test_exit_codes_and_summaries() -> None:
    assert exit_code([]) == 0
    assert exit_code([D1]) == 1
    assert exit_code([D1, D2]) == 2
    assert summary("q.yaml", [], 5) == "q.yaml is valid: 5 queues"
    assert summary("q.yaml", [], 1) == "q.yaml is valid: 1 queue"
    assert summary("q.yaml", [D1, D1]) == "2 errors in q.yaml"
