"""The supervisor's pure parts: restart backoff, flapping, FATAL verdicts, reload plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexflow.config.model import Config, QueueConfig, RestartPolicy
from cortexflow.errors import EXIT_CONFIG, UsageError
from cortexflow.supervisor.plan import ReloadPlan, plan_reload, select_queues
from cortexflow.supervisor.policy import (
    RestartHistory,
    Verdict,
    decide_after_exit,
    describe_exit,
    restart_delay,
    restart_delay_bounds,
    restarts_within,
)

POLICY = RestartPolicy()  # limit 10 in 600 s, backoff max 60 s, stable after 120 s


@pytest.mark.parametrize(
    ("n", "base"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0), (7, 60.0), (50, 60.0), (10_000, 60.0)],
)
def test_backoff_doubles_from_one_second_up_to_the_cap_with_20_percent_jitter(
    n: int, base: float
) -> None:
    low, high = restart_delay_bounds(n, cap=60.0)
    assert low == pytest.approx(base * 0.8)
    assert high == pytest.approx(base * 1.2)
    assert restart_delay(n, 60.0, rand=lambda: 0.0) == pytest.approx(low)
    assert restart_delay(n, 60.0, rand=lambda: 0.5) == pytest.approx(base)
    assert low <= restart_delay(n, 60.0) <= high


def test_backoff_counts_from_one() -> None:
    with pytest.raises(ValueError):
        restart_delay_bounds(0, 60.0)


def test_restarts_within_keeps_only_the_window() -> None:
    assert restarts_within((1.0, 50.0, 99.0), now=100.0, window=60.0) == (50.0, 99.0)


def _crash(history: RestartHistory, now: float, uptime: float = 0.5, code: int | None = 1):
    return decide_after_exit(history, code, uptime, now, POLICY, rand=lambda: 0.5)


def test_consecutive_crashes_back_off_1_2_4_8_seconds() -> None:
    history, now, delays = RestartHistory(), 0.0, []
    for _ in range(5):
        decision = _crash(history, now)
        assert decision.verdict is Verdict.RESTART
        delays.append(decision.delay)
        history = decision.history
        now += decision.delay + 0.5
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert history.total == 5


def test_a_stable_run_resets_the_backoff() -> None:
    history = RestartHistory(times=(0.0, 1.0, 3.0), consecutive=3, total=3)
    decision = _crash(history, now=200.0, uptime=POLICY.stable_after)
    assert decision.verdict is Verdict.RESTART
    assert decision.delay == 1.0
    assert decision.history.consecutive == 1


def test_config_error_exit_is_fatal_at_once() -> None:
    decision = _crash(RestartHistory(), now=0.0, code=EXIT_CONFIG)
    assert decision.verdict is Verdict.FATAL_CONFIG


def test_more_than_limit_restarts_in_window_is_fatal() -> None:
    history, now = RestartHistory(), 0.0
    for _ in range(POLICY.limit):
        decision = _crash(history, now)
        assert decision.verdict is Verdict.RESTART
        history, now = decision.history, now + 1.0
    assert _crash(history, now).verdict is Verdict.FATAL_FLAPPING


def test_restarts_older_than_the_window_do_not_count() -> None:
    history = RestartHistory(times=tuple(float(t) for t in range(10)), consecutive=10)
    # The same ten restarts, seen 10 minutes later: all out of the window.
    decision = _crash(history, now=10.0 + POLICY.window)
    assert decision.verdict is Verdict.RESTART
    assert len(decision.history.times) == 1


def test_describe_exit() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(78) == "exited with code 78 (configuration error)"
    assert describe_exit(3) == "exited with code 3"


# -- reload plans -------------------------------------------------------------------------------


def q(name: str, **kw: object) -> QueueConfig:
    return QueueConfig(name=name, handler="h:f", **kw)  # type: ignore[arg-type]


def test_reload_plan_sorts_every_kind_of_change() -> None:
    running = {"a": q("a"), "b": q("b"), "c": q("c"), "d": q("d"), "e": q("e")}
    wanted = {
        "a": q("a"),  # unchanged
        "b": q("b", concurrency=3),  # replaced
        "c": q("c", processes=4),  # resized only
        "e": q("e"),  # unchanged but fatal: retried
        "f": q("f"),  # added
    }
    plan = plan_reload(running, {"e"}, wanted)
    assert plan == ReloadPlan(
        added=("f",), removed=("d",), replaced=("b",), resized=("c",), retried=("e",)
    )
    assert plan.summary() == "added f; removed d; replaced b; resized c; retrying e"
    assert plan_reload(running, set(), running).summary() == "nothing changed"


def test_processes_and_another_key_changed_is_a_replace() -> None:
    plan = plan_reload({"a": q("a")}, set(), {"a": q("a", processes=2, concurrency=2)})
    assert plan.replaced == ("a",)


def test_select_queues_refuses_unknown_names(tmp_path: Path) -> None:
    config = Config(path=tmp_path / "queues.yaml", queues={"a": q("a"), "b": q("b")})
    assert list(select_queues(config, ())) == ["a", "b"]
    assert list(select_queues(config, ("b",))) == ["b"]
    with pytest.raises(UsageError, match="unknown queue 'zz'"):
        select_queues(config, ("zz",))
