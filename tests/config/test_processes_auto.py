"""`processes: auto`: one worker process per CPU this host lets `up` use, counted when loaded.

The count is the CPU affinity set (what `taskset` or a container's cpuset gives), capped by a
cgroup v2 `cpu.max` quota; the files it reads are written here for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cortexflow.config import load_config
from cortexflow.config.cpus import available_cpus, cgroup_cpu_quota, read_cpu_max
from cortexflow.config.dump import config_to_dict
from tests.helpers.procs import clean_env, run_cli
from tests.helpers.project import write_project

AUTO = """
version: 1
defaults:
  processes: auto
queues:
  a:
    handler: cf_auto_tasks:handle
  b:
    handler: cf_auto_tasks:handle
    processes: 3
  c:
    handler: cf_auto_tasks:handle
    processes: auto
"""
# A module name of its own: load_config imports handlers in this process, and another test's
# `tasks` module, already in sys.modules, has no `handle`.
TASKS = {"cf_auto_tasks.py": "async def handle(data):\n    return data\n"}


@pytest.fixture(autouse=True)
def _forget_the_module() -> Iterator[None]:
    yield
    sys.modules.pop("cf_auto_tasks", None)


def test_auto_is_the_affinity_count_of_this_process(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path, AUTO, TASKS), env={})
    cpus = len(os.sched_getaffinity(0))
    assert available_cpus() <= cpus
    assert config.queues["a"].processes == available_cpus()
    assert config.queues["c"].processes == available_cpus()
    assert (config.queues["a"].processes_auto, config.queues["c"].processes_auto) == (True, True)
    assert (config.queues["b"].processes, config.queues["b"].processes_auto) == (3, False)


def test_the_dump_keeps_auto_and_loads_back_to_the_same_config(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path, AUTO, TASKS), env={})
    data = config_to_dict(config)
    assert [data["queues"][q]["processes"] for q in "abc"] == ["auto", 3, "auto"]
    again = load_config(write_project(tmp_path / "again", yaml.safe_dump(data), TASKS), env={})
    assert again.queues == config.queues


def test_validate_accepts_auto_and_refuses_other_words(tmp_path: Path) -> None:
    write_project(tmp_path, AUTO, TASKS)
    ok = run_cli("validate", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    bad = write_project(
        tmp_path / "bad",
        "version: 1\nqueues:\n  a:\n    handler: cf_auto_tasks:handle\n    processes: all\n",
        TASKS,
    )
    refused = run_cli("validate", cwd=bad.parent)
    assert refused.returncode != 0
    assert "queues.yaml:5" in refused.stderr + refused.stdout, refused.stderr
    assert '"auto"' in refused.stderr + refused.stdout


def test_each_host_resolves_its_own_count_one_file_two_cpu_sets(tmp_path: Path) -> None:
    """The same file under `taskset -c 0` (a 1-CPU host) and with every CPU of this one."""
    write_project(tmp_path, AUTO, TASKS)
    env = clean_env({"COLUMNS": "200"})
    argv = [sys.executable, "-m", "cortexflow", "config"]
    one = subprocess.run(
        ["taskset", "-c", "0", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout.count("processes: auto  # 1 on this host") == 2, one.stdout
    every = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert every.returncode == 0, every.stderr
    n = available_cpus()
    assert every.stdout.count(f"processes: auto  # {n} on this host") == 2, every.stdout
    assert "processes: 3\n" in every.stdout


def test_cpu_max_quota_rounds_up_and_max_is_no_limit(tmp_path: Path) -> None:
    cases = {"200000 100000\n": 2, "150000 100000\n": 2, "50000 100000\n": 1, "max 100000\n": None}
    for text, want in cases.items():
        (tmp_path / "cpu.max").write_text(text)
        assert read_cpu_max(tmp_path / "cpu.max") == want, text
    assert read_cpu_max(tmp_path / "missing") is None


def test_the_tightest_quota_on_the_cgroup_path_wins(tmp_path: Path) -> None:
    own = "/system.slice/app.service"
    (tmp_path / "system.slice" / "app.service").mkdir(parents=True)
    (tmp_path / "system.slice" / "app.service" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "system.slice" / "cpu.max").write_text("120000 100000\n")  # 1.2 CPUs -> 2
    assert cgroup_cpu_quota(tmp_path, own) == 2
    (tmp_path / "system.slice" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, own) == 3
    (tmp_path / "system.slice" / "app.service" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, own) is None
