"""The retry decision (a pure function), the outcome encoding and the text limits, on their own:
no Redis, no worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortexflow.backoff import backoff_bounds
from cortexflow.config.model import Backoff, QueueConfig, Retention, RetentionRule
from cortexflow.engine.jobs import Job
from cortexflow.engine.outcomes import (
    KEEP_BY_QUEUE,
    OutcomeKind,
    completed,
    decide,
    encode_outcome,
    failed,
    keep_rule,
    result_json,
)
from cortexflow.engine.text import MAX_ERROR_BYTES, MAX_STACKTRACE_BYTES, bounded, valid_utf8
from cortexflow.errors import UnrecoverableError

QUEUE = QueueConfig(name="q", handler="x:y", attempts=3, dead_letter="dlq")


def _job(made: int = 0, attempts: int = 3, **opts: Any) -> Job:
    return Job(
        id="j",
        queue="q",
        name="n",
        data={},
        state="active",
        priority=0,
        delay=0.0,
        attempts=attempts,
        attempts_made=made,
        stalls=0,
        created_at=0.0,
        processed_at=None,
        finished_at=None,
        opts={"attempts": attempts, **opts},
    )


def test_success_completes_with_the_keep_rule() -> None:
    d = decide(_job(), None, QUEUE, lambda: 0.5)
    assert (d.kind, d.keep, d.run) == (OutcomeKind.COMPLETED, KEEP_BY_QUEUE, 1)
    assert decide(_job(remove_on_complete=True), None, QUEUE).keep == 0
    assert decide(_job(remove_on_complete=5), None, QUEUE).keep == 5
    assert decide(_job(remove_on_complete=1), None, QUEUE).keep == 1  # newest 1, not "keep"
    no_keep = QueueConfig(
        name="q", handler="x:y", retention=Retention(RetentionRule(None, None, keep=False))
    )
    assert decide(_job(remove_on_complete=5), None, no_keep).keep == 0


def test_failure_retries_with_the_one_backoff_function_until_attempts_run_out() -> None:
    backoff = {"type": "exponential", "delay": 2.0, "max": 100.0, "jitter": 0.5}
    for made in (0, 1):
        d = decide(_job(made, backoff=backoff), RuntimeError("x"), QUEUE, lambda: 0.25)
        low, high = backoff_bounds("exponential", 2.0, 100.0, 0.5, made + 1)
        assert d.kind is OutcomeKind.RETRY
        assert d.delay == pytest.approx(low + (high - low) * 0.25)
    last = decide(_job(2, backoff=backoff), RuntimeError("x"), QUEUE, lambda: 0.25)
    assert (last.kind, last.dead_letter, last.run) == (OutcomeKind.FAILED, True, 3)


def test_unrecoverable_fails_at_once_and_without_a_dead_letter_queue_none_is_asked() -> None:
    d = decide(_job(0), UnrecoverableError("no"), QUEUE)
    assert (d.kind, d.dead_letter) == (OutcomeKind.FAILED, True)
    plain = QueueConfig(name="q", handler="x:y")
    assert decide(_job(0, attempts=1), RuntimeError(), plain).dead_letter is False
    assert decide(_job(0, attempts=1, remove_on_fail=True), RuntimeError(), plain).keep == 0


def test_a_job_without_backoff_options_uses_the_queues() -> None:
    q = QueueConfig(name="q", handler="x:y", backoff=Backoff(type="fixed", delay=7.0))
    assert decide(_job(0), RuntimeError(), q, lambda: 1.0).delay == 7.0


@given(st.integers(0, 5), st.integers(1, 6), st.floats(0, 1), st.booleans())
def test_decide_is_total_and_consistent(made: int, attempts: int, r: float, ok: bool) -> None:
    d = decide(_job(made, attempts), None if ok else RuntimeError(), QUEUE, lambda: r)
    if ok:
        assert d.kind is OutcomeKind.COMPLETED
    elif made + 1 < attempts:
        assert d.kind is OutcomeKind.RETRY and d.delay >= 0
    else:
        assert d.kind is OutcomeKind.FAILED


def test_keep_rule() -> None:
    assert keep_rule(None, True) == KEEP_BY_QUEUE
    assert keep_rule(False, True) == KEEP_BY_QUEUE
    assert keep_rule(True, True) == 0
    assert keep_rule(0, True) == 0
    assert keep_rule(3, False) == 0


def test_texts_are_valid_utf8_and_bounded_in_bytes() -> None:
    odd = "x\udcff"
    assert valid_utf8(odd) == "x\\udcff"
    assert bounded("é" * 10, 1000) == "é" * 10
    cut = bounded("é" * 10_000, 1000)
    assert len(cut.encode()) <= 1000 and cut.endswith("[cut: 20,000 bytes, limit 1,000]")
    tail = bounded("a" * 5000 + "THE END", 1000, keep_tail=True)
    assert len(tail.encode()) <= 1000 and tail.endswith("THE END") and "[cut:" in tail


def test_failed_outcomes_clean_and_bound_their_texts_and_encode_for_cjson() -> None:
    d = decide(_job(2), RuntimeError(), QUEUE)
    o = failed("j", "w:1", "boom \udcff" + "m" * 100_000, "s" * 200_000 + "\udcfe", d)
    assert len(o.error.encode()) <= MAX_ERROR_BYTES and "\\udcff" in o.error
    assert len(o.stacktrace.encode()) <= MAX_STACKTRACE_BYTES and o.stacktrace.endswith("\\udcfe")
    arg = encode_outcome(o).decode("utf-8")  # valid UTF-8: no lone surrogate left anywhere
    assert "\\ud" not in arg.replace("\\\\ud", "")  # and no \\uDCxx escape cjson would refuse
    kind, jid, token, _, error, _, delay, keep, dead = json.loads(arg)
    assert (kind, jid, token, delay, keep, dead) == ("f", "j", "w:1", 0, KEEP_BY_QUEUE, 1)
    assert error == o.error


def test_results_replace_lone_surrogates_and_are_bounded() -> None:
    assert json.loads(result_json({"f": "a\udcffb"})) == {"f": "a\ufffdb"}
    assert result_json([1, "é"]) == '[1, "é"]'
    big = json.loads(result_json("z" * 2_000_000))
    assert isinstance(big, str) and big.startswith('"zzz') and "[cut: 2,000,002 bytes" in big
    with pytest.raises(ValueError):
        result_json(float("nan"))
    o = completed("j", "t", result_json({"a": 1}), decide(_job(), None, QUEUE))
    assert json.loads(encode_outcome(o))[:4] == ["c", "j", "t", '{"a": 1}']
