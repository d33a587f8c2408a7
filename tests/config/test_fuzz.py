"""Property: whatever a queues.yaml holds, the loader answers with diagnostics, never a crash.

A valid config is mutated (values replaced by other types, keys added or removed, text cut and
spliced) and fed to check_config in-process; a few run through the real CLI too.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortexflow.config import check_config, load_config
from cortexflow.errors import ConfigError
from tests.helpers.procs import CliResult

HANDLER = "cortexflow.queues.email_sending:handle"
BASE: dict[str, Any] = {
    "version": 1,
    "redis": {"url": "redis://localhost:6379/0", "prefix": "cf"},
    "stop_timeout": "30s",
    "restart": {"limit": 10, "window": "10m", "backoff_max": "60s", "stable_after": "120s"},
    "defaults": {"attempts": 3, "backoff": {"type": "fixed", "delay": "1s"}},
    "queues": {
        "emails": {
            "handler": HANDLER,
            "concurrency": 5,
            "priority": 10,
            "rate_limit": {"max": 10, "duration": "1s"},
            "backoff": {"type": "exponential", "delay": "1s", "max": "10m", "jitter": 0.1},
            "timeout": "5m",
            "retention": {"completed": {"age": "1h", "count": 1000}, "failed": False},
            "dead_letter": "failed",
            "lease": "30s",
            "max_stalls": 2,
        },
        "failed": {"handler": HANDLER, "retention": False},
    },
}
# Strings without ":" can never form an import path, so the fuzzer imports nothing new.
TEXT = st.text(st.characters(blacklist_characters=":", blacklist_categories=["Cs"]), max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(["5s", "1m30s", "0s", "30s1m", "5 sec", "${HOME}", "${CF_UNSET_X}", "fixed",
                     "emails", "failed", "nope", "p.json", HANDLER, "cf_fuzz_nothing:handle"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(TEXT | st.sampled_from(["max", "age"]), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    import copy

    data: Any = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            if action == "replace":
                data = draw(VALUES)
            continue
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(TEXT)] = draw(VALUES)
        if not isinstance(data, dict):
            break
    return data


def _check(text: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queues.yaml"
        Path(tmp, "p.json").write_text('{"type": "object"}')
        path.write_text(text, encoding="utf-8")
        config, diagnostics = check_config(path, env={"HOME": "/home/x"})
        assert (config is None) == any(d.severity == "error" for d in diagnostics)
        for d in diagnostics:
            assert d.line is None or d.line >= 1
            assert d.message
        try:
            load_config(path, env={"HOME": "/home/x"})
        except ConfigError as exc:
            assert exc.exit_code in (1, 2)
            return exc.exit_code
        return 0


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_base_config_is_valid() -> None:
    assert _check(yaml.safe_dump(BASE)) == 0


@FUZZ
@given(mutated())
def test_mutated_structure_never_crashes(data: Any) -> None:
    _check(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.data())
def test_mutated_text_never_crashes(data: st.DataObject) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 20)))
        insert = data.draw(st.sampled_from(["", ":", "- ", "\t", "&a ", "*a", "!!python/none ", "{", "]",
                                             '"', "\n  ", "${", "<<: ", "---\n", "\x00", "é"]))  # fmt: skip
        text = text[:start] + insert + text[end:]
    _check(text)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated())
def test_mutated_structure_through_the_cli(cli: Callable[..., CliResult], data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "queues.yaml").write_text(
            yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
        )
        result = cli("validate", cwd=tmp)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stdout + result.stderr
