"""The loader on valid files: defaults, merging, interpolation, resolution of paths and URLs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cortexflow.config import (
    Backoff,
    Config,
    QueueConfig,
    RateLimit,
    RedisConfig,
    RestartPolicy,
    Retention,
    RetentionRule,
    check_config,
    load_config,
)
from cortexflow.config.dump import config_to_dict
from cortexflow.errors import ConfigError
from tests.helpers.project import REPO

HANDLER = "cortexflow.queues.email_sending:handle"


def write(tmp_path: Path, text: str, name: str = "queues.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_queues_yaml() -> None:
    config = load_config(REPO / "queues.yaml", env={})
    assert {name: q.concurrency for name, q in config.queues.items()} == {
        "message-processing": 10,
        "webhook-processing": 15,
        "email-sending": 5,
        "analytics": 10,
        "notifications": 5,
        "dead-letters": 1,
    }
    # One worker process for all of them, as the original service ran them in one process.
    assert config.process_groups() == {"service": tuple(config.queues)}
    dead = config.queues["dead-letters"]
    assert dead.handler == "cortexflow.queues.dead_letters:handle" and dead.dead_letter is None
    for name, queue in config.queues.items():
        if name == "dead-letters":
            continue
        assert queue.dead_letter == "dead-letters"
        module = name.replace("-", "_")
        assert queue.handler == f"cortexflow.queues.{module}:handle"
        assert queue.payload_schema == REPO / "schemas" / "payloads" / f"{name}.json"
        assert queue.payload_schema_doc is not None
        assert queue.payload_schema_doc["type"] == "object"
    assert config.redis == RedisConfig(url=None, prefix="cortexflow")
    assert config.path == REPO / "queues.yaml"
    assert config.base_dir == REPO


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    path = write(tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n")
    config = load_config(path, env={})
    assert config == Config(path=path, queues={"a": QueueConfig(name="a", handler=HANDLER)})
    q = config.queues["a"]
    assert (q.concurrency, q.processes, q.priority, q.attempts, q.max_stalls) == (10, 1, 0, 3, 1)
    assert (q.timeout, q.lease, q.rate_limit, q.dead_letter) == (300.0, 30.0, None, None)
    assert q.backoff == Backoff("exponential", 1.0, 600.0, 0.0)
    assert q.retention == Retention(RetentionRule(3600.0, 1000), RetentionRule(604800.0, 10000))
    assert config.stop_timeout == 30.0
    assert config.restart == RestartPolicy(10, 600.0, 60.0, 120.0)


def test_every_key_converted(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"type": "object"}')
    path = write(
        tmp_path,
        f"""\
        version: 1
        redis: {{url: "redis://h:6380/2", prefix: app}}
        stop_timeout: 1m30s
        restart: {{limit: 3, window: 1h, backoff_max: 5s, stable_after: 250ms}}
        queues:
          a:
            handler: {HANDLER}
            concurrency: 7
            processes: 2
            priority: 1000000
            rate_limit: {{max: 100, duration: 2s}}
            attempts: 1
            backoff: {{type: fixed, delay: 500ms, max: 2h, jitter: 0.5}}
            timeout: 1h30m
            retention: {{completed: {{age: null, count: 5}}, failed: false}}
            payload_schema: p.json
            dead_letter: dlq
            lease: 45s
            max_stalls: 0
          dlq:
            handler: {HANDLER}
            retention: false
        """,
    )
    config = load_config(path, env={})
    assert config.redis == RedisConfig("redis://h:6380/2", "app")
    assert config.stop_timeout == 90.0
    assert config.restart == RestartPolicy(3, 3600.0, 5.0, 0.25)
    assert config.queues["a"] == QueueConfig(
        name="a",
        handler=HANDLER,
        concurrency=7,
        processes=2,
        priority=1_000_000,
        rate_limit=RateLimit(100, 2.0),
        attempts=1,
        backoff=Backoff("fixed", 0.5, 7200.0, 0.5),
        timeout=5400.0,
        retention=Retention(RetentionRule(None, 5), RetentionRule(None, None, keep=False)),
        payload_schema=tmp_path / "p.json",
        dead_letter="dlq",
        lease=45.0,
        max_stalls=0,
    )
    assert config.queues["a"].payload_schema_doc == {"type": "object"}
    nothing = RetentionRule(None, None, keep=False)
    assert config.queues["dlq"].retention == Retention(nothing, nothing)


def test_defaults_apply_and_queue_keys_win_mappings_merge(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        defaults:
          attempts: 5
          concurrency: 3
          backoff: {{type: fixed, delay: 2s}}
          retention: {{completed: {{age: 2h}}}}
          dead_letter: dlq
        queues:
          a:
            handler: {HANDLER}
            concurrency: 8
            backoff: {{max: 1m}}
            retention: {{completed: {{count: 7}}}}
          dlq:
            handler: {HANDLER}
        """,
    )
    config = load_config(path, env={})
    a, dlq = config.queues["a"], config.queues["dlq"]
    assert (a.attempts, a.concurrency, dlq.attempts, dlq.concurrency) == (5, 8, 5, 3)
    assert a.backoff == Backoff("fixed", 2.0, 60.0, 0.0)
    assert a.retention.completed == RetentionRule(7200.0, 7)
    assert a.retention.failed == Retention().failed
    assert a.dead_letter == "dlq"
    assert dlq.dead_letter is None  # not into itself through defaults


def test_queue_order_is_kept(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid"]
    body = "".join(f"  {n}:\n    handler: {HANDLER}\n" for n in names)
    config = load_config(write(tmp_path, "queues:\n" + body), env={})
    assert list(config.queues) == names


def test_interpolation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        redis:
          url: redis://:${{PASS}}@${{HOST:-localhost}}:6379/0
          prefix: "${{PREFIX:-cf}}"
        queues:
          a:
            handler: {HANDLER}
            concurrency: ${{WORKERS:-4}}
            timeout: ${{TIMEOUT}}
            dead_letter: ${{DLQ:-}}
        """,
    )
    env = {"PASS": "s3cr$t", "WORKERS": "12", "TIMEOUT": "2m", "HOST": ""}
    config = load_config(path, env=env)
    assert config.redis.url == "redis://:s3cr$t@localhost:6379/0"
    assert config.redis.prefix == "cf"
    q = config.queues["a"]
    assert (q.concurrency, q.timeout) == (12, 120.0)  # a plain ${VAR} resolves like written text
    assert q.dead_letter is None  # an empty plain value is null


def test_interpolated_value_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n    concurrency: ${{W}}\n")
    _, (diag,) = check_config(path, env={"W": "many"})
    assert (diag.code, diag.line, diag.column) == ("schema.type", 4, 18)
    assert diag.message == 'expected an integer >= 1, got "many"'


def test_quoted_interpolation_stays_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, f'queues:\n  a:\n    handler: {HANDLER}\n    concurrency: "${{W}}"\n')
    _, (diag,) = check_config(path, env={"W": "5"})
    assert diag.message == 'expected an integer >= 1, got "5"'


def test_redis_url_from_env_when_not_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n")
    assert load_config(path, env={"REDIS_URL": "redis://x:1/0"}).redis.url == "redis://x:1/0"
    assert load_config(path, env={}).redis.url is None
    file_url = write(
        tmp_path,
        f"redis: {{url: 'redis://f/0'}}\nqueues:\n  a:\n    handler: {HANDLER}\n",
        "b.yaml",
    )
    assert load_config(file_url, env={"REDIS_URL": "redis://env/0"}).redis.url == "redis://f/0"


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_TEST_WORKERS", "6")
    path = write(
        tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n    concurrency: ${{CF_TEST_WORKERS}}\n"
    )
    assert load_config(path).queues["a"].concurrency == 6


def test_yaml_1_1_traps_are_closed(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n  on:\n    handler: {HANDLER}\n"
    )
    assert list(load_config(path, env={}).queues) == ["a", "on"]  # not True
    _, (diag,) = check_config(
        write(tmp_path, f"queues:\n  a:\n    handler: {HANDLER}\n    timeout: 1:30\n", "b.yaml"),
        env={},
    )
    assert diag.message.endswith('got "1:30"')  # not 90


def test_merge_keys_and_anchors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        queues:
          a: &base
            handler: {HANDLER}
            concurrency: 4
          b:
            <<: *base
            concurrency: 9
        """,
    )
    config = load_config(path, env={})
    assert (config.queues["a"].concurrency, config.queues["b"].concurrency) == (4, 9)
    assert config.queues["b"].handler == HANDLER


def test_handlers_beside_queues_yaml_are_importable(tmp_path: Path) -> None:
    (tmp_path / "cf_fixture_beside.py").write_text(
        "def handle(data, job=None):\n    return data\n\n"
        "class Worker:\n    async def process(self, job):\n        return 1\n"
    )
    path = write(
        tmp_path,
        "queues:\n  a:\n    handler: cf_fixture_beside:handle\n"
        "  b:\n    handler: cf_fixture_beside:Worker\n",
    )
    try:
        assert set(load_config(path, env={}).queues) == {"a", "b"}
    finally:
        sys.modules.pop("cf_fixture_beside", None)


def test_no_import_check_skips_handlers(tmp_path: Path) -> None:
    path = write(tmp_path, "queues:\n  a:\n    handler: cf_nowhere_at_all:handle\n")
    assert (
        load_config(path, check_imports=False, env={}).queues["a"].handler
        == "cf_nowhere_at_all:handle"
    )
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_handler_printing_at_import_does_not_touch_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cf_fixture_chatty.py").write_text(
        "print('hello from import')\ndef handle(d):\n    return d\n"
    )
    path = write(tmp_path, "queues:\n  a:\n    handler: cf_fixture_chatty:handle\n")
    try:
        load_config(path, env={})
    finally:
        sys.modules.pop("cf_fixture_chatty", None)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hello from import" in captured.err


def test_missing_file_and_directory_exit_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2
    assert "not found" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.exit_code == 2


def test_not_utf8_and_too_large(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"queues:\n  a:\n    handler: \xff\xfe\n")
    _, (diag,) = check_config(bad, env={})
    assert (diag.code, diag.line) == ("yaml.encoding", 3)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_100_000)
    _, (diag,) = check_config(big, env={})
    assert diag.code == "file.too-large"


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "queues: " + "[" * 200 + "]" * 200 + "\n")
    config, diagnostics = check_config(path, env={})
    assert config is None
    assert diagnostics[0].code in ("yaml.depth", "yaml.syntax")


def test_dump_round_trips(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"type": "object"}')
    path = write(
        tmp_path,
        f"""\
        redis: {{url: "redis://h:1/0"}}
        queues:
          a:
            handler: {HANDLER}
            rate_limit: {{max: 3}}
            backoff: {{jitter: 0.25, delay: 1m30s}}
            retention: {{completed: false, failed: {{age: null, count: 3}}}}
            payload_schema: p.json
            dead_letter: b
          b:
            handler: {HANDLER}
            retention: false
        """,
    )
    config = load_config(path, env={})
    again = write(tmp_path, yaml.safe_dump(config_to_dict(config), sort_keys=False), "again.yaml")
    reloaded = load_config(again, env={})
    assert reloaded.queues == config.queues
    assert (reloaded.redis, reloaded.restart, reloaded.stop_timeout) == (
        config.redis,
        config.restart,
        config.stop_timeout,
    )


def test_dump_redacts_the_password(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"redis: {{url: 'redis://u:hunter2@h:1/0'}}\nqueues:\n  a:\n    handler: {HANDLER}\n",
    )
    data = config_to_dict(load_config(path, env={}))
    assert data["redis"]["url"] == "redis://u:***@h:1/0"


def test_settings_reach_the_queue_merged_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults:\n"
        "  settings: {region: eu, retries_url: '${URL:-http://x}'}\n"
        "queues:\n"
        f"  a:\n    handler: {HANDLER}\n    settings: {{orchestrator: 'm:Bot', region: us}}\n"
        f"  b:\n    handler: {HANDLER}\n",
    )
    config = load_config(path, env={})
    assert config.queues["a"].settings == {
        "region": "us",
        "retries_url": "http://x",
        "orchestrator": "m:Bot",
    }
    assert config.queues["b"].settings == {"region": "eu", "retries_url": "http://x"}
