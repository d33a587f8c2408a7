"""docs/config.md documents every key of queues.yaml, rendered from the schema: the two
cannot drift (a key added to the schema fails here until the reference is regenerated)."""

from __future__ import annotations

from cortexflow.config.reference import BEGIN, END, key_paths, render_reference
from cortexflow.config.schema import build_schema
from tests.helpers.project import REPO

DOC = (REPO / "docs" / "config.md").read_text()


def test_the_reference_in_docs_config_md_is_the_generated_one() -> None:
    section = DOC[DOC.index(BEGIN) + len(BEGIN) : DOC.index(END)].strip()
    assert section == render_reference().strip(), (
        "docs/config.md's key reference is stale: run `python -m cortexflow.config.reference`"
    )


def test_every_key_has_its_type_default_example_and_description() -> None:
    paths = key_paths()
    assert {"redis.url", "queues.<name>.handler", "queues.<name>.backoff.jitter"} <= set(paths)
    assert "queues.<name>.retention.failed.count" in paths
    for path in paths:
        heading = f"#### `{path}`\n\n"
        assert heading in DOC, f"{path} is not documented in docs/config.md"
        entry = DOC.split(heading, 1)[1].split("\n#### ", 1)[0]
        description, facts = entry.split("\n\n", 1)
        assert description and description != "(no description)", path
        assert "- type: " in facts and "- example: `" in facts, path


def test_a_key_added_to_the_schema_shows_up() -> None:
    schema = build_schema()
    queue = schema["properties"]["queues"]["additionalProperties"]
    queue["properties"]["isolation"] = {
        "description": "Run each job in a process of its own.",
        "type": "string",
        "default": "thread",
        "examples": ["process"],
    }
    text = render_reference(schema)
    assert "#### `queues.<name>.isolation`\n\nRun each job in a process of its own." in text
    assert '- default: `"thread"`' in text and "- example: `isolation: process`" in text
