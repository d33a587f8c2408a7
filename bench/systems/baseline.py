"""cortexflow at another commit, in the same run (``bench/engine.py --baseline REF``).

The pass of bench/systems/cortexflow.py (enqueue, then one worker process drains) runs in a
child process whose ``cortexflow`` package is REF's (``git archive REF cortexflow``, first on
``PYTHONPATH``; the worker inherits it), so a change is measured against the code before it on
the same server, interleaved run by run, and each side enqueues with its own code (a change of
the stored job format cannot confuse the other side).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.measure import BenchError, PassResult
from bench.systems import REPO, Context

NAME = "baseline"
TREE_ENV = "BENCH_CORTEXFLOW_TREE"  # the folder holding REF's cortexflow package
_ref: str | None = None
_tree: Path | None = None


def label_for(gather_chunk: int) -> str:
    return f"cortexflow at {_ref} (same pass, that commit's code)"


def prepare(workdir: Path) -> None:
    """Nothing of its own: the cortexflow system writes the handler and queues.yaml."""


def configure(ref: str, workdir: Path) -> None:
    """Unpack REF's cortexflow package into ``workdir/baseline`` (the child's import path)."""
    global _ref, _tree
    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True
            )
            .stdout.decode()
            .strip()
        )
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "cortexflow"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"--baseline {ref}: {exc.stderr.decode().strip()}") from None
    tree = workdir / "baseline"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    _ref, _tree = sha, tree


async def run_pass(ctx: Context, admin: aioredis.Redis, run: int) -> PassResult:
    # Only this pass and its worker import REF's package: the child's environment names it
    # (Context.child_env puts it first on the worker's PYTHONPATH).
    env = {**ctx.child_env(), TREE_ENV: str(_tree)}
    env["PYTHONPATH"] = os.pathsep.join([str(_tree), env["PYTHONPATH"]])
    spec = {
        "workdir": str(ctx.workdir),
        "url": ctx.url,
        "server_pid": ctx.server_pid,
        "jobs": ctx.jobs,
        "pickups": ctx.pickups,
        "gather_chunk": ctx.gather_chunk,
        "seconds": ctx.deadline - time.monotonic(),
        "persistence": ctx.persistence,
        "run": run,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.systems.baseline",
        json.dumps(spec),
        env=env,
        cwd=ctx.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"baseline pass failed:\n{err.decode()[-3000:]}")
    fields = json.loads(out.decode().splitlines()[-1])
    return dataclasses.replace(PassResult(**fields), system=NAME)


def _child(spec: dict[str, object]) -> None:
    """One cortexflow pass with the cortexflow package this process imports (REF's)."""
    import uvloop

    from bench.procs import Children
    from bench.systems import cortexflow

    children = Children()
    ctx = Context(
        workdir=Path(str(spec["workdir"])),
        url=str(spec["url"]),
        server_pid=int(str(spec["server_pid"])),
        children=children,
        jobs=int(str(spec["jobs"])),
        pickups=int(str(spec["pickups"])),
        gather_chunk=int(str(spec["gather_chunk"])),
        deadline=time.monotonic() + float(str(spec["seconds"])),
        persistence=str(spec["persistence"]),
    )

    async def one() -> PassResult:
        admin = aioredis.Redis.from_url(ctx.url, decode_responses=True, socket_timeout=10)
        try:
            return await cortexflow.run_pass(ctx, admin, int(str(spec["run"])))
        finally:
            await admin.aclose()

    try:
        res = uvloop.run(one())
    finally:
        children.stop_all()
    print(json.dumps(dataclasses.asdict(res)))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
