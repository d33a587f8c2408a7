"""How many CPUs this process may use: what `processes: auto` resolves to on a host.

The count is the smaller of:

- the CPUs the process may run on: ``os.sched_getaffinity(0)`` (a container's or a
  ``taskset``'s CPU set), else ``os.cpu_count()`` where the platform has no affinity call;
- the cgroup v2 CPU quota, ``ceil(quota / period)`` from ``cpu.max``, of the process's own
  cgroup and each of its parents (a Docker ``--cpus=2`` or a Kubernetes CPU limit); a
  ``max`` quota, cgroup v1, or an unreadable file is no limit.

At least 1. `up` resolves it when it loads queues.yaml, so one file gives each host its own
count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus() -> int:
    """CPUs this process may use: its affinity set, capped by a cgroup v2 CPU quota."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, own: str | None = None) -> int | None:
    """The tightest ``cpu.max`` quota, rounded up to whole CPUs, on the cgroup path ``own``
    (this process's by default) under ``root`` (None: no quota, or not cgroup v2)."""
    if own is None:
        own = own_cgroup()
        if own is None:
            return None
    quotas = []
    folder = root / own.strip("/")
    for candidate in (folder, *folder.parents):
        quota = read_cpu_max(candidate / "cpu.max")
        if quota is not None:
            quotas.append(quota)
        if candidate == root:
            break
    return min(quotas) if quotas else None


def own_cgroup() -> str | None:
    """This process's cgroup v2 path, e.g. ``/system.slice/app.service`` (None: not v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    # cgroup v2 has the single line "0::/path"; v1 lines name their controllers.
    return next((line[3:] for line in lines if line.startswith("0::")), None)


def read_cpu_max(path: Path) -> int | None:
    """``"200000 100000"`` -> 2, ``"150000 100000"`` -> 2, ``"max 100000"`` -> None."""
    try:
        quota, period = path.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None
