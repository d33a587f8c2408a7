"""Schedules under real `cortexflow up` processes sharing one server (each in its own folder,
as on separate hosts): one job per tick with 2 and 3 supervisors, with one of them killed -9
mid-way, across a stop of every supervisor (catch_up), and a schedule removed by SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cortexflow import QueueManager
from cortexflow.engine import schedules as store
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc as Up

PREFIX = "cortexflow"
HANDLER = textwrap.dedent(
    """
    import os
    from pathlib import Path

    RUNS = Path(os.environ["CF_RUNS"])


    def tick(data, job):
        # One file per run: a job run twice would show as two lines.
        with (RUNS / job.id).open("a") as f:
            f.write(f"{os.getpid()}\\n")
        return None
    """
)


def write_host(folder: Path, schedules: str, queue_extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handlers.py").write_text(HANDLER)
    path = folder / "queues.yaml"
    path.write_text(
        "version: 1\n"
        "stop_timeout: 5s\n"
        "queues:\n"
        "  ticks:\n"
        "    handler: handlers:tick\n"
        "    concurrency: 4\n" + queue_extra + "schedules:\n" + textwrap.indent(schedules, "  ")
    )
    return path


EVERY_SECOND = "every-second:\n  queue: ticks\n  every: 1s\n  data: {n: 1}\n"


def server_ms(redis_client: Any) -> int:
    seconds, micros = redis_client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def scheduled(redis_client: Any, schedule: str = "every-second") -> dict[int, float]:
    """tick ms -> created_at ms of every job the schedule added (whatever its state)."""
    out = {}
    for key in redis_client.scan_iter(f"{{{PREFIX}:ticks}}:j:{schedule}@*", count=1000):
        if key.endswith(b":logs"):
            continue
        job_id = key.decode().rsplit(":", 1)[1]
        tick = store.tick_of(job_id)
        created = redis_client.hget(key, "created_at")
        if tick is not None and created is not None:
            out[tick] = float(created)
    return out


def wait_until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_for(pred, timeout, 0.1, message=what)


def wait_server_time(redis_client: Any, target_ms: int) -> None:
    """Poll the server's clock until it reaches ``target_ms`` (the window under test)."""
    wait_until(
        lambda: server_ms(redis_client) >= target_ms,
        (target_ms - server_ms(redis_client)) / 1000 + 30,
        f"server time {target_ms}",
    )


def runs(folder: Path) -> dict[str, int]:
    """job id -> how many times a handler ran it, over every host folder under ``folder``."""
    out: dict[str, int] = {}
    for f in folder.glob("*/runs/*"):
        out[f.name] = out.get(f.name, 0) + len(f.read_text().splitlines())
    return out


def start_hosts(
    launch: Callable[..., Up], tmp_path: Path, n: int, url: str, schedules: str
) -> list[Up]:
    ups = []
    for i in range(n):
        folder = tmp_path / f"host{i}"
        write_host(folder, schedules)
        (folder / "runs").mkdir(exist_ok=True)
        ups.append(launch(folder, "--redis-url", url, env={"CF_RUNS": str(folder / "runs")}))
    for up in ups:
        up.wait_for(r"ticks\.0 \(pid \d+\) ready", 60)
    return ups


def report_lateness(ticks: dict[int, float]) -> str:
    late = sorted(created - tick for tick, created in ticks.items())
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    return (
        f"lateness over {len(late)} ticks: p50 {statistics.median(late):.0f} ms, p99 {p99:.0f} ms"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("hosts", "kill"), [(2, False), (3, False), (3, True)])
def test_every_second_for_20s_is_one_job_per_tick_across_supervisors(
    start_up: Callable[..., Up],
    tmp_path: Path,
    redis_url: str,
    redis_client: Any,
    hosts: int,
    kill: bool,
) -> None:
    ups = start_hosts(start_up, tmp_path, hosts, redis_url, EVERY_SECOND)
    wait_until(lambda: scheduled(redis_client), 30, "a first tick")
    t0 = server_ms(redis_client) // 1000 * 1000
    if kill:
        wait_server_time(redis_client, t0 + 10_000)
        os.kill(ups[0].pid, signal.SIGKILL)  # the supervisor only: its worker follows it
        ups[0].proc.wait(10)
    wait_server_time(redis_client, t0 + 21_500)
    ticks = {t: c for t, c in scheduled(redis_client).items() if t0 < t <= t0 + 20_000}
    assert 19 <= len(ticks) <= 21, sorted(ticks)
    assert sorted(ticks) == list(range(t0 + 1000, t0 + 20_001, 1000)), "a tick was skipped"
    assert all(created >= tick for tick, created in ticks.items()), "a tick ran early"
    # No tick twice: one job per tick, each run once by a handler on one of the hosts.
    done = wait_until(
        lambda: (
            (r := runs(tmp_path)) and all(store.job_id("every-second", t) in r for t in ticks) and r
        ),
        30,
        "every job of the window run",
    )
    assert all(done[store.job_id("every-second", t)] == 1 for t in ticks)
    print(report_lateness(ticks))  # shown with -s; the numbers in docs/schedules.md
    for up in ups[1:] if kill else ups:
        up.send(signal.SIGTERM)
        assert up.wait_exit(30) == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "one", "all"])
def test_catch_up_after_the_only_supervisor_was_stopped_for_5_ticks(
    start_up: Callable[..., Up],
    tmp_path: Path,
    redis_url: str,
    redis_client: Any,
    mode: str,
) -> None:
    schedules = EVERY_SECOND + f"  catch_up: {mode}\n"
    (up,) = start_hosts(start_up, tmp_path, 1, redis_url, schedules)
    wait_until(lambda: len(scheduled(redis_client)) >= 2, 30, "two ticks")
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0
    stopped = server_ms(redis_client)
    last_before = max(scheduled(redis_client))
    # Ticks within 3 s of the last sign of life (MISSED_SLACK_MS) run as usual; then at least 5
    # ticks pass with no supervisor.
    wait_server_time(redis_client, stopped + 3_000 + 6_000)
    relaunched = server_ms(redis_client)  # no supervisor ran before this
    (again,) = start_hosts(start_up, tmp_path / "again", 1, redis_url, schedules)
    restarted = server_ms(redis_client)
    wait_until(
        lambda: any(t > restarted + 2_000 for t in scheduled(redis_client)), 30, "ticks after"
    )
    again.send(signal.SIGTERM)
    assert again.wait_exit(30) == 0
    ticks = sorted(scheduled(redis_client))
    missed = [t for t in range(last_before + 1000, relaunched, 1000) if t > stopped + 3_000]
    assert len(missed) >= 5
    # The restarted supervisor says what it did for the ticks nobody was there for.
    said = again.wait_for(
        r"'every-second': (\d+) tick\(s\) came while no supervisor ran; catch_up (\w+): (.*)$",
        10,
    )[0]
    assert int(said.group(1)) >= len(missed) >= 5 and said.group(2) == mode
    if mode == "all":  # each missed tick ran, once, and nothing is missing
        assert said.group(3) == "added each"
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000))
    elif mode == "one":  # only the newest of the missed ticks ran
        newest = store.tick_of(said.group(3).removeprefix("added "))
        assert newest is not None and newest in ticks and newest >= missed[-1]
        assert not [t for t in ticks if stopped + 3_000 < t < newest], (missed, ticks)
    else:  # none of them ran
        assert said.group(3) == "skipped them"
        assert not set(missed) & set(ticks), (missed, ticks)
    assert any(t > restarted for t in ticks)


@pytest.mark.slow
def test_sighup_stops_a_schedule_removed_from_the_file(
    start_up: Callable[..., Up],
    tmp_path: Path,
    redis_url: str,
    redis_client: Any,
) -> None:
    (up,) = start_hosts(start_up, tmp_path, 1, redis_url, EVERY_SECOND)
    wait_until(lambda: scheduled(redis_client), 30, "a first tick")
    other = "other:\n  queue: ticks\n  every: 1s\n"
    write_host(tmp_path / "host0", other)
    up.send(signal.SIGHUP)
    up.wait_for(r"schedules from queues\.yaml: upserted other; removed every-second", 30)
    reloaded = server_ms(redis_client)
    wait_until(
        lambda: len([t for t in scheduled(redis_client, "other") if t > reloaded]) >= 3,
        30,
        "three ticks of the new schedule",
    )
    assert max(scheduled(redis_client)) <= reloaded + 2000
    up.send(signal.SIGTERM)
    assert up.wait_exit(30) == 0


@pytest.mark.slow
def test_a_runtime_upsert_reaches_running_supervisors_and_a_removal_stops_it(
    start_up: Callable[..., Up],
    tmp_path: Path,
    redis_url: str,
    redis_client: Any,
) -> None:
    ups = start_hosts(start_up, tmp_path, 2, redis_url, "{}\n")
    path = tmp_path / "host0" / "queues.yaml"

    async def api(op: str) -> None:
        async with QueueManager(path, redis_url) as qm:
            if op == "upsert":
                await qm.upsert_schedule("adhoc", queue="ticks", every="1s", data={"n": 2})
            else:
                assert await qm.remove_schedule("adhoc")

    asyncio.run(api("upsert"))
    wait_until(lambda: len(scheduled(redis_client, "adhoc")) >= 3, 30, "three runtime ticks")
    asyncio.run(api("remove"))
    # The file's (empty) schedules are reloaded: a runtime schedule is not the file's to drop.
    asyncio.run(api("upsert"))
    ups[0].send(signal.SIGHUP)
    ups[0].wait_for(r"SIGHUP: reloaded", 30)
    count = len(scheduled(redis_client, "adhoc"))
    wait_until(lambda: len(scheduled(redis_client, "adhoc")) >= count + 3, 30, "ticks go on")
    asyncio.run(api("remove"))
    removed = server_ms(redis_client)
    wait_server_time(redis_client, removed + 3_000)
    # A scheduler may have read the definition up to a second before the removal.
    assert max(scheduled(redis_client, "adhoc")) <= removed + 2000
    for up in ups:
        up.send(signal.SIGTERM)
        assert up.wait_exit(30) == 0
