"""The producer process of one pass: ``python -m bench.peers.produce NAME URL SERIAL TOTAL``.

Adds SERIAL jobs one awaited call at a time, then TOTAL - SERIAL in bulk (where the system has a
bulk call, or gathers single calls), and prints {"serial": jobs/s, "bulk": jobs/s or null}."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys

from bench.peers.adapters import load


def main(argv: list[str]) -> int:
    name, url, serial, total = argv[0], argv[1], int(argv[2]), int(argv[3])
    result = load(name).produce(url, serial, total)
    if inspect.iscoroutine(result):  # every async producer on the same loop: uvloop if there
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(result)
        else:
            result = uvloop.run(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
