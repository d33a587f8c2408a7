"""What the supervisor should be running: slots per queue, and what a reload changes.

``plan_reload`` is a pure function from (running queues, newly loaded queues) to the list of
changes, so the SIGHUP rules are tested without a process in sight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cortexflow.config.model import Config, QueueConfig
from cortexflow.supervisor.child import Child
from cortexflow.supervisor.policy import ChildState, RestartHistory


@dataclass
class Slot:
    """One (queue, replica) that should be running."""

    queue: str
    replica: int
    child: Child | None = None
    previous: Child | None = None  # the child being replaced, until `child` is ready
    history: RestartHistory = field(default_factory=RestartHistory)
    restart_at: float | None = None  # backing off until then (monotonic)
    last_exit: int | None = None

    @property
    def name(self) -> str:
        return f"{self.queue}.{self.replica}"

    def forget_failures(self) -> None:
        self.history = RestartHistory(total=self.history.total)
        self.restart_at = None


@dataclass
class QueueRun:
    """A queue the supervisor runs: its config, its slots, and why it was given up, if it was."""

    config: QueueConfig
    color: int
    slots: list[Slot] = field(default_factory=list)
    fatal: str | None = None


def select_queues(config: Config, wanted: tuple[str, ...]) -> dict[str, QueueConfig]:
    """The queues `up` runs: all of them, or the named subset (UsageError for unknown names)."""
    if not wanted:
        return dict(config.queues)
    return {name: config.queue(name) for name in wanted}


@dataclass(frozen=True)
class ReloadPlan:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # changed beyond `processes`: new children, then old ones stop
    resized: tuple[str, ...] = ()  # only `processes` changed: start or stop the difference
    retried: tuple[str, ...] = ()  # unchanged but FATAL: a reload is the way to try again

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("replaced", self.replaced),
                ("resized", self.resized),
                ("retrying", self.retried),
            )
            if names
        ]
        return "; ".join(parts) or "nothing changed"


def plan_reload(
    running: Mapping[str, QueueConfig], fatal: set[str], wanted: Mapping[str, QueueConfig]
) -> ReloadPlan:
    """Sort every queue into added / removed / replaced / resized / retried (or unchanged)."""
    replaced, resized, retried = [], [], []
    for name, new in wanted.items():
        old = running.get(name)
        if old is None:
            continue
        if old != new:
            if dataclasses.replace(old, processes=new.processes) == new:
                resized.append(name)
            else:
                replaced.append(name)
        elif name in fatal:
            retried.append(name)
    return ReloadPlan(
        added=tuple(n for n in wanted if n not in running),
        removed=tuple(n for n in running if n not in wanted),
        replaced=tuple(replaced),
        resized=tuple(resized),
        retried=tuple(retried),
    )


def process_row(run: QueueRun, slot: Slot, now: float) -> dict[str, Any]:
    """One process as `cortexflow status` shows it."""
    child = slot.child
    if child is not None:
        state = child.state.value
    elif run.fatal:
        state = ChildState.FATAL.value
    elif slot.restart_at is not None:
        state = ChildState.BACKING_OFF.value
    else:
        state = ChildState.STARTING.value
    return {
        "queue": slot.queue,
        "replica": slot.replica,
        "pid": child.pid if child else None,
        "state": state,
        "restarts": slot.history.total,
        "started_at": child.started_wall if child else None,
        "last_exit": slot.last_exit,
        "reason": run.fatal,
        "restart_in": round(slot.restart_at - now, 1) if slot.restart_at else None,
    }
