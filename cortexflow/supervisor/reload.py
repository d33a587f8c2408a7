"""SIGHUP: re-read queues.yaml and make the running queues match it (docs/supervisor.md).

One concept: reloading. A file that does not load leaves everything as it was; the redis
settings never change under a running `up`. Removed queues retire their children, added ones
get slots, a changed queue gets a fresh child per slot (the old one stops once its successor
is ready), and a FATAL queue is given another chance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from cortexflow.config.model import Config, QueueConfig
from cortexflow.supervisor.child import Child
from cortexflow.supervisor.plan import ProcessSpec, QueueRun, Slot, plan_reload, select_queues
from cortexflow.supervisor.policy import ChildState

Retire = Callable[[Child, float], None]  # ask a child to stop; it is no longer any slot's
Loader = Callable[[Path], Config]


def load_reloaded(
    current: Config, loader: Loader, selected: tuple[str, ...], event: Callable[[str], None]
) -> tuple[Config, dict[str, QueueConfig]] | None:
    """The new config and its selected queues, or None (logged) when the file is not valid."""
    path = current.path
    try:
        new = loader(path)
        wanted = select_queues(new, selected)
    except Exception as exc:  # ConfigError above all; never let a reload end `up`
        event(f"SIGHUP: {path} is not valid; the running config stays as it was:\n{exc}")
        return None
    if new.redis != current.redis:
        event("SIGHUP: the redis settings changed; restart `up` to apply them")
        new = dataclasses.replace(new, redis=current.redis)
    return new, wanted


def apply_queues(
    queues: dict[str, QueueRun],
    wanted: dict[str, ProcessSpec],
    retire: Retire,
    next_color: int,
    now: float,
) -> tuple[str, int]:
    """Make the running processes (``queues``, by process name) match ``wanted``; returns
    what changed (for the log) and the next colour."""
    running = {name: run.config for name, run in queues.items()}
    fatal = {name for name, run in queues.items() if run.fatal}
    plan = plan_reload(running, fatal, wanted)
    for name in plan.removed:
        for slot in queues.pop(name).slots:
            _drop_slot(slot, retire, now)
    for name in plan.added:
        queues[name] = QueueRun(wanted[name], next_color)
        next_color += len(wanted[name].queues)  # a colour per queue of the process
    for name, qc in wanted.items():
        run = queues[name]
        for slot in run.slots:
            if name in plan.replaced:
                _replace_slot(slot, retire, now)
            elif run.fatal:
                slot.forget_failures()
        run.config = qc
        run.fatal = None
        _resize(run, qc.processes, retire, now)
    return plan.summary(), next_color


def _resize(run: QueueRun, processes: int, retire: Retire, now: float) -> None:
    while len(run.slots) > processes:
        _drop_slot(run.slots.pop(), retire, now)
    while len(run.slots) < processes:
        run.slots.append(Slot(run.config.name, len(run.slots)))


def _drop_slot(slot: Slot, retire: Retire, now: float) -> None:
    for child in (slot.child, slot.previous):
        if child is not None:
            retire(child, now)
    slot.child = slot.previous = None


def _replace_slot(slot: Slot, retire: Retire, now: float) -> None:
    """Start a new child for the slot now; the old one stops once the new one is ready."""
    if slot.child is not None:
        if slot.previous is None and slot.child.state is not ChildState.STOPPING:
            slot.previous = slot.child
        else:  # a replacement already under way: the half-started one goes
            retire(slot.child, now)
    slot.child = None
    slot.forget_failures()
