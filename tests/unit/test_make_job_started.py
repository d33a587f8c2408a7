"""make_job(started=): a unit test can play a handler's re-run after a crash (job.started)."""

from __future__ import annotations

from typing import Any

from cortexflow.testing import make_job, run_handler


def once(data: Any, job: Any) -> str:
    return "re-run: check before sending again" if job.started > job.attempt else "first run"


def test_started_defaults_to_the_attempt_and_can_be_given() -> None:
    assert (make_job().started, make_job(attempt=3).started) == (1, 3)
    assert run_handler(once, make_job()) == "first run"
    assert run_handler(once, make_job(started=2)) == "re-run: check before sending again"
