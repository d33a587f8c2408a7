"""``--profile DIR``: py-spy attached to the cortexflow worker while it drains, and a summary
of its raw stacks (top functions by own and by inclusive samples)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.measure import BenchError
from bench.procs import Children

RATE = 250
SITE = str(Path(sys.executable).parent.parent) + "/lib/python3.11/site-packages/"
REPO = str(Path(__file__).resolve().parent.parent) + "/"


@dataclass(frozen=True)
class Profiler:
    proc: subprocess.Popen[bytes]
    output: Path
    children: Children


async def start_profiler(children: Children, folder: Path, pid: int, name: str) -> Profiler:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(spy, os.X_OK):
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    await asyncio.sleep(0.3)  # let the interpreter come up before attaching
    output = folder / f"{name}.txt"
    argv = [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
    argv += ["--function", "--nonblocking", "--output", str(output)]
    proc = children.spawn(argv, env=dict(os.environ), cwd=folder, log=folder / "py-spy.log")
    return Profiler(proc, output, children)


def stop_profiler(profiler: Profiler) -> None:
    """SIGINT makes py-spy write its samples."""
    if profiler.proc.poll() is None:
        profiler.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.proc.wait(15)
    profiler.children.stop(profiler.proc, grace=1.0)


def count_frames(path: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """(total samples, own samples per frame, inclusive samples per frame)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    return total, own, incl


def summarize_profile(path: Path, top: int = 25) -> str:
    total, own, incl = count_frames(path)
    out = [f"{path.name}: {total} samples ({RATE} Hz, CPU only)"]
    for title, counts in (("own samples:", own), ("inclusive samples:", incl)):
        out += ["", title]
        for f, n in sorted(counts.items(), key=lambda x: -x[1])[:top]:
            short = f.replace(REPO, "").replace(SITE, "")
            out.append(f"  {100 * n / max(total, 1):5.1f}%  {short}")
    return "\n".join(out)
