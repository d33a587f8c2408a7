"""What the supervisor should be running: slots per worker process, and what a reload changes.

A worker process runs one queue, or several that share it (``process:`` in queues.yaml):
``process_specs`` groups the selected queues into ProcessSpecs, and each (process, replica) is a
Slot. ``plan_reload`` is a pure function from (running processes, newly loaded ones) to the
list of changes, so the SIGHUP rules are tested without a process in sight. A queue moved from
one process to another changes both: each gets a new child (started first; the old one drains
once it is ready), so each job is run by the old process or by the new one, never lost.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cortexflow.config.model import Config, QueueConfig
from cortexflow.supervisor.child import Child
from cortexflow.supervisor.policy import ChildState, RestartHistory


@dataclass(frozen=True)
class ProcessSpec:
    """A worker process as queues.yaml declares it: its name, its queues, its replicas."""

    name: str
    queues: tuple[QueueConfig, ...]
    processes: int = 1
    processes_auto: bool = field(default=False, compare=False)

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def describe(self) -> str:
        """``light (a, b)`` for a shared process, ``a`` for a queue of its own."""
        names = self.queue_names
        return self.name if names == (self.name,) else f"{self.name} ({', '.join(names)})"


def process_specs(queues: Mapping[str, QueueConfig]) -> dict[str, ProcessSpec]:
    """The selected queues grouped by the process they run in, in the order of queues.yaml."""
    groups: dict[str, list[QueueConfig]] = {}
    for qc in queues.values():
        groups.setdefault(qc.process_name, []).append(qc)
    return {
        name: ProcessSpec(
            name, tuple(qs), qs[0].processes, any(q.processes_auto for q in qs)
        )  # the loader made them agree on processes
        for name, qs in groups.items()
    }


Command = Callable[[Config, "ProcessSpec", int], list[str]]


def worker_command(config: Config, spec: ProcessSpec, replica: int) -> list[str]:
    """A fresh interpreter running `cortexflow worker QUEUE...` with the process's queues (never
    a fork of the supervisor)."""
    return [
        sys.executable, "-m", "cortexflow", "worker", *spec.queue_names,
        "-f", str(config.path.resolve()), "--replica", str(replica),
    ]  # fmt: skip


def log_names(specs: Mapping[str, ProcessSpec]) -> list[str]:
    """Every name `up`'s log may prefix a line with: ``queue.N``, and ``process.N`` for the
    lines of a shared process that belong to none of its queues."""
    return [
        f"{name}.{r}"
        for spec in specs.values()
        for name in dict.fromkeys((*spec.queue_names, spec.name))
        for r in range(spec.processes)
    ]


Spec = TypeVar("Spec", ProcessSpec, QueueConfig)


@dataclass
class Slot:
    """One (process, replica) that should be running."""

    queue: str  # the process's name (a queue's own for a queue that runs alone)
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
    """A process the supervisor runs: its spec, its slots, and why it was given up, if it was."""

    config: ProcessSpec
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


def _but_processes(spec: ProcessSpec | QueueConfig) -> ProcessSpec | QueueConfig:
    """``spec`` with every ``processes`` set aside (to tell a resize from a replace)."""
    if isinstance(spec, ProcessSpec):
        queues = tuple(dataclasses.replace(q, processes=0) for q in spec.queues)
        return dataclasses.replace(spec, processes=0, queues=queues)
    return dataclasses.replace(spec, processes=0)


def plan_reload(
    running: Mapping[str, Spec], fatal: set[str], wanted: Mapping[str, Spec]
) -> ReloadPlan:
    """Sort every process (or queue) into added / removed / replaced / resized / retried (or
    unchanged)."""
    replaced, resized, retried = [], [], []
    for name, new in wanted.items():
        old = running.get(name)
        if old is None:
            continue
        if old != new:
            if _but_processes(old) == _but_processes(new):
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
        "process": slot.queue,
        "queues": list(run.config.queue_names),
        "replica": slot.replica,
        "pid": child.pid if child else None,
        "state": state,
        "restarts": slot.history.total,
        "started_at": child.started_wall if child else None,
        "last_exit": slot.last_exit,
        "reason": run.fatal,
        "restart_in": round(slot.restart_at - now, 1) if slot.restart_at else None,
    }


def process_rows(
    runs: Mapping[str, QueueRun], retiring: Iterable[Child], now: float
) -> dict[str, Any]:
    """The ``queues`` and ``processes`` of the supervisor's snapshot (`cortexflow status`)."""
    processes = [process_row(run, slot, now) for run in runs.values() for slot in run.slots]
    processes += [
        {
            "queue": c.queue, "process": c.queue, "queues": list(c.queues),
            "replica": c.replica, "pid": c.pid, "state": c.state.value,
            "restarts": 0, "started_at": c.started_wall, "retiring": True,
        }
        for c in retiring
    ]  # fmt: skip
    queues = {
        queue.name: {"processes": run.config.processes, "process": name, "fatal": run.fatal}
        for name, run in runs.items()
        for queue in run.config.queues
    }
    return {"queues": queues, "processes": processes}
