"""The hot path's builders of Job and Fetched make the same objects as their constructors."""

from __future__ import annotations

import dataclasses

from cortexflow.engine.jobs import Job, leased_job
from cortexflow.engine.queue import Fetched, leased

# What QueueConsumer._parse_fetch gives leased_job for every leased job.
FETCHED_FIELDS = {
    "id": "j1",
    "queue": "emails",
    "name": "send",
    "data": {"to": "a@example.com"},
    "state": "active",
    "priority": 5,
    "delay": 0.0,
    "attempts": 3,
    "attempts_made": 1,
    "stalls": 0,
    "created_at": 1.5,
    "processed_at": None,
    "finished_at": None,
    "opts": {"attempts": 3},
    "started": 2,
}


def test_leased_job_equals_the_constructed_job_field_by_field() -> None:
    fast, slow = leased_job(dict(FETCHED_FIELDS)), Job(**FETCHED_FIELDS)
    assert fast == slow and repr(fast) == repr(slow)
    for f in dataclasses.fields(Job):  # every field set, defaults included (a new field too)
        assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    assert dataclasses.replace(fast, state="completed").state == "completed"
    assert fast.current_error is None and not fast.error_is_history


def test_the_fetch_path_gives_every_field_without_a_default() -> None:
    required = {
        f.name
        for f in dataclasses.fields(Job)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert required | {"opts"} <= set(FETCHED_FIELDS)


def test_a_leased_job_stays_frozen() -> None:
    job = leased_job(dict(FETCHED_FIELDS))
    try:
        job.state = "failed"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a leased job could be changed")


def test_leased_equals_fetched() -> None:
    job = Job(**FETCHED_FIELDS)
    assert leased(job, "tok") == Fetched(job=job, token="tok")
    assert leased(job, "tok").token == "tok" and leased(job, "tok").job is job
