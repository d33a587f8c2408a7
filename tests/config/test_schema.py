"""The JSON Schema: one source, two identical copies, draft-07 keywords, defaults = dataclasses."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cortexflow.config import Backoff, QueueConfig, RedisConfig, RestartPolicy, Retention
from cortexflow.config.model import Config
from cortexflow.config.schema import build_schema, load_schema, packaged_schema_text, render_schema
from cortexflow.durations import DURATION_PATTERN, parse_duration
from tests.helpers.project import REPO

TOP = REPO / "schemas" / "queues.schema.json"
PACKAGED = REPO / "cortexflow" / "schemas" / "queues.schema.json"
PAYLOADS = [
    "message-processing",
    "webhook-processing",
    "email-sending",
    "analytics",
    "notifications",
]

# Every keyword draft-07 defines (validation, applicators, annotations, core).
DRAFT7_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "examples",
    "readOnly", "writeOnly", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "items", "additionalItems",
    "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties", "required",
    "properties", "patternProperties", "additionalProperties", "dependencies", "propertyNames",
    "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "format", "definitions",
    "contentMediaType", "contentEncoding",
}  # fmt: skip
NO_DEFAULT = {"handler", "tasks", "queues", "max"}  # required keys have no default
# A schedule's required keys, and its job options whose absence means "the queue's setting".
NO_DEFAULT_PATHS = (
    {f"schedules.*.{key}" for key in ("queue", "cron", "every", "name", "start_at")}
    | {
        # A next: route's keys whose absence means "not set" (docs/pipelines.md).
        f"queues.*.next.*.{key}"
        for key in (
            "to",
            "name",
            "when",
            "for_each",
            "id",
            "priority",
            "join",
            "when.path",
            "when.equals",
            "when.in",
            "when.exists",
            "join.to",
            "join.name",
            "join.id",
        )
    }
    | {
        f"schedules.*.opts.{key}"
        for key in ("priority", "attempts", "timeout", "remove_on_complete", "remove_on_fail")
    }
    | {
        # group.key left out: only jobs that name their group are grouped (docs/groups.md).
        f"{where}.group.key"
        for where in ("defaults", "queues.*")
    }
)


def test_both_copies_are_byte_identical_and_generated() -> None:
    assert TOP.read_bytes() == PACKAGED.read_bytes()
    assert PACKAGED.read_text() == render_schema(), "run: python -m cortexflow.config.schema"
    assert packaged_schema_text() == TOP.read_text()
    assert load_schema() == build_schema()


def test_payload_schema_copies_are_identical() -> None:
    for name in PAYLOADS:
        top = REPO / "schemas" / "payloads" / f"{name}.json"
        assert (
            top.read_bytes()
            == (REPO / "cortexflow" / "schemas" / "payloads" / top.name).read_bytes()
        )


def test_is_a_valid_draft_07_schema() -> None:
    schema = load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("properties", "definitions"):
                for name, sub in value.items():
                    yield from _walk(sub, f"{path}/{key}/{name}")
            elif key in ("default", "examples", "const", "enum"):
                continue
            else:
                yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}/{i}")


def test_only_draft_07_keywords() -> None:
    for path, node in _walk(load_schema()):
        unknown = set(node) - DRAFT7_KEYWORDS
        assert not unknown, f"{path}: {unknown}"


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}".lstrip("."), sub
            yield from _properties(sub, f"{path}.{name}")
        for key in ("additionalProperties", "items"):
            if isinstance(node.get(key), dict):
                yield from _properties(node[key], f"{path}.*")
        for key in ("oneOf", "anyOf"):
            for sub in node.get(key, []):
                yield from _properties(sub, path)


def test_every_property_documented_with_examples_and_defaults() -> None:
    props = list(_properties(load_schema()))
    assert len(props) > 40
    for path, prop in props:
        assert prop.get("description"), path
        assert prop.get("examples"), path
        if path.rsplit(".", 1)[-1] not in NO_DEFAULT and path not in NO_DEFAULT_PATHS:
            assert "default" in prop, path
        for example in prop["examples"]:
            # Every example is valid for its own property.
            jsonschema.Draft7Validator(prop).validate(example)


def test_objects_refuse_unknown_keys() -> None:
    for path, node in _walk(load_schema()):
        if node.get("type") == "object" or "object" in node.get("type", []):
            # queues, schedules: named by the user; settings, a schedule's data: the handler's
            # own keys, free-form on purpose
            assert node.get("additionalProperties") is False or path.endswith(
                ("/queues", "/settings", "/schedules", "/data")
            ), path


def test_durations_are_strings_with_units() -> None:
    durations = [p for p, s in _properties(load_schema()) if s.get("pattern") == DURATION_PATTERN]
    # 8 per queue (group.rate_limit.duration too), 8 in defaults, 4 top-level, 2 per schedule
    # (every, opts.timeout), 1 per next: route (delay)
    assert len(durations) == 23
    validator = jsonschema.Draft7Validator({"type": "string", "pattern": DURATION_PATTERN})
    for good in ["250ms", "5s", "1m30s", "2h", "7d", "1.5s"]:
        assert validator.is_valid(good)
    for bad in [5, "5", "5 sec", "5S", "", "s"]:
        assert not validator.is_valid(bad)


def _seconds(value: Any) -> Any:
    return (
        parse_duration(value)
        if isinstance(value, str) and re.match(DURATION_PATTERN, value)
        else value
    )


def _field_defaults(cls: type) -> dict[str, Any]:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def test_schema_defaults_equal_dataclass_defaults() -> None:
    schema = load_schema()
    top = schema["properties"]
    queue = top["queues"]["additionalProperties"]["properties"]
    q_defaults = _field_defaults(QueueConfig)
    for name, prop in queue.items():
        if name in ("handler", "tasks"):  # one of the two is required: no default
            continue
        if name == "backoff":
            continue
        if name == "retention":
            continue
        if name == "settings":
            assert prop["default"] == {} and QueueConfig(name="a", handler="b:c").settings == {}
            continue
        if name == "rate_limit":
            assert prop["default"] is None and q_defaults["rate_limit"] is None
            continue
        if name == "next":  # the list in YAML, a tuple of Route in the dataclass
            assert prop["default"] == [] and QueueConfig(name="a", handler="b:c").routes == ()
            continue
        assert _seconds(prop["default"]) == q_defaults[name], name
    # backoff: each field's default and the object's default
    b = queue["backoff"]
    assert {k: _seconds(v["default"]) for k, v in b["properties"].items()} == _field_defaults(
        Backoff
    )
    assert {k: _seconds(v) for k, v in b["default"].items()} == _field_defaults(Backoff)
    # retention
    r = queue["retention"]["default"]
    assert Retention().completed.age == parse_duration(r["completed"]["age"])
    assert Retention().completed.count == r["completed"]["count"]
    assert Retention().failed.age == parse_duration(r["failed"]["age"])
    assert Retention().failed.count == r["failed"]["count"]
    rules = queue["retention"]["oneOf"][1]["properties"]
    for state in ("completed", "failed"):
        assert rules[state]["default"] == r[state]
    # rate limit duration
    assert _seconds(queue["rate_limit"]["properties"]["duration"]["default"]) == 1.0
    # defaults: block has the same settings
    # (handler, tasks and next: routes are a queue's own)
    assert top["defaults"]["properties"] == {
        k: v for k, v in queue.items() if k not in ("handler", "tasks", "next")
    }
    # top level
    assert _seconds(top["stop_timeout"]["default"]) == _field_defaults(Config)["stop_timeout"]
    assert top["version"]["default"] == _field_defaults(Config)["version"]
    restart = top["restart"]
    assert {k: _seconds(v["default"]) for k, v in restart["properties"].items()} == _field_defaults(
        RestartPolicy
    )
    assert {k: _seconds(v) for k, v in restart["default"].items()} == _field_defaults(RestartPolicy)
    redis = top["redis"]
    assert {k: v["default"] for k, v in redis["properties"].items()} == _field_defaults(RedisConfig)


@pytest.mark.parametrize("name", PAYLOADS)
def test_payload_schemas_accept_the_original_readme_examples(name: str) -> None:
    doc = json.loads((REPO / "schemas" / "payloads" / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft7Validator)
    cls.check_schema(doc)
    validator = cls(doc, format_checker=cls.FORMAT_CHECKER)
    for example in doc["examples"]:
        validator.validate(example)
    assert not validator.is_valid({})
    assert not validator.is_valid({"unrelated": 1})


def test_payload_examples_match_the_original_service() -> None:
    def doc(name: str) -> dict[str, Any]:
        return json.loads((REPO / "schemas" / "payloads" / f"{name}.json").read_text())

    # Copied from the original README (timestamps made concrete).
    webhook = {
        "webhookId": "wh-123", "channel": "telegram", "payload": {}, "headers": {},
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }  # fmt: skip
    email = {"to": "user@example.com", "from": "noreply@cortex.com", "subject": "Welcome!",
             "body": "Hello...", "html": "<p>Hello...</p>"}  # fmt: skip
    analytics = {"event": "message_sent", "data": {"tokens": 100, "cost": 0.002},
                 "userId": "user-123", "timestamp": "2024-05-01T12:00:00.000Z"}  # fmt: skip
    note = {
        "userId": "user-123",
        "type": "email",
        "title": "New Message",
        "message": "You have a new message",
    }
    for name, data in [("webhook-processing", webhook), ("email-sending", email),
                       ("analytics", analytics), ("notifications", note)]:  # fmt: skip
        jsonschema.Draft7Validator(doc(name)).validate(data)
    # an email needs a body or html
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(doc("email-sending")).validate({"to": "a@b.c", "subject": "s"})


def test_attempts_has_the_bound_every_face_checks(tmp_path: Path) -> None:
    """queues.yaml refuses what every add would refuse: attempts above MAX_ATTEMPTS (a queue
    that validates but whose every job fails at add would be worse than an error here)."""
    from cortexflow.backoff import MAX_ATTEMPTS
    from cortexflow.config import load_config
    from cortexflow.config.schema import render_schema
    from cortexflow.errors import ConfigError

    path = tmp_path / "queues.yaml"
    (tmp_path / "h.py").write_text("def run(data):\n    return None\n")
    path.write_text(f"queues:\n  q:\n    handler: h:run\n    attempts: {MAX_ATTEMPTS + 1}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert f"from 1 to {MAX_ATTEMPTS}" in str(refused.value)
    path.write_text(f"queues:\n  q:\n    handler: h:run\n    attempts: {MAX_ATTEMPTS}\n")
    assert load_config(path).queues["q"].attempts == MAX_ATTEMPTS
    bounds = re.findall(
        r'"attempts": \{[^}]*?"maximum": (\d+)', json.dumps(json.loads(render_schema()))
    )
    assert bounds and all(int(b) == MAX_ATTEMPTS for b in bounds), bounds
