"""One benchmark run's lifetime: its child processes, its temporary folder, its exit code.

    with session(workdir, keep=args.keep) as s:
        results = run_all(args, workdir, s.children)
    print(render(results))
    return s.code

SIGTERM stops the run as Ctrl-C does. A BenchError or an interrupt inside the block is printed
(one line, no traceback) and the block ends there: ``s.code`` is 0 when the block completed, 1
after a BenchError, 130 after an interrupt. Every child is stopped; the folder is removed unless
``keep`` or the run failed (then its path is printed: the logs are there).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import BenchError
from bench.procs import Children


@dataclass
class Session:
    children: Children = field(default_factory=Children)
    code: int = 1


def interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def session(workdir: Path, *, keep: bool) -> Iterator[Session]:
    signal.signal(signal.SIGTERM, interrupt)
    s = Session()
    try:
        yield s
        s.code = 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        s.code = 130
    finally:
        s.children.stop_all()
        if keep or s.code:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
