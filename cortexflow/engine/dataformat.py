"""The data format: which layout of keys, job hashes and script arguments the data under a
prefix is in, so that a release refuses data it cannot read and migrates data it can.

``{prefix}:format`` (a STRING of JSON, in the prefix's own slot on a Cluster) holds
``{"version": n, "oldest_reader": r, "written_by": "cortexflow x.y.z"}``: the data is in
format ``n``, and code of format ``r`` or newer can work on it (``r <= n``: a format that only
adds what older code ignores keeps ``r``). A prefix without the key is empty or was written by a
release before the key existed (0.1.0 and earlier), whose layout is format 1.

Processes check once, when they connect (``ensure_format``): a worker at start, ``up``, the
Python API's and so the CLI's and dashboard's first connection. Never per add or fetch: the
scripts do not read the key (on a Cluster it lives in another slot than the queues).

To change the format (docs/engine.md, "Data format and mixed versions"): raise ``FORMAT``; set
``OLDEST_READER`` to the oldest format whose code still works on the new data; add a
``Migration`` to ``MIGRATIONS`` keyed by the new format (a no-op when the change needs no
rewrite). A migration must be idempotent and safe while processes of formats at or above
``OLDEST_READER`` run: it runs under a lock, but a lock can expire mid-way and a crash leaves
it half done, so another process may run it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from cortexflow import __version__
from cortexflow.engine import registry
from cortexflow.engine.connection import Client
from cortexflow.engine.keys import format_key, format_lock_key
from cortexflow.errors import DataFormatError

FORMAT = 1  # the format this code writes
OLDEST_READER = 1  # the oldest format whose code can work on data this code writes
LEGACY = 1  # the format of a prefix that has no key (written before the key existed)


@dataclass(frozen=True)
class Migration:
    """Brings the data under a prefix from format ``to - 1`` to ``to``.

    ``run(client, prefix, queues)``: idempotent, safe beside processes of format
    ``oldest_reader`` or newer; ``queues`` are the caller's configured queue names."""

    to: int
    oldest_reader: int
    what: str
    run: Callable[[Client, str, Sequence[str]], Awaitable[None]]


# Migrations by the format they bring the data to. None yet: format 1 is the first.
MIGRATIONS: Mapping[int, Migration] = {}


@dataclass(frozen=True)
class Code:
    """What a release knows: the format it writes, the oldest format whose code can work on
    that data, and its migrations. ``CURRENT`` is this code's; tests make others."""

    format: int
    oldest_reader: int
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    name: str = f"cortexflow {__version__}"


CURRENT = Code(FORMAT, OLDEST_READER, MIGRATIONS)


@dataclass(frozen=True)
class Stored:
    """What ``{prefix}:format`` says (``present`` False: no key, format 1 assumed)."""

    version: int
    oldest_reader: int
    written_by: str
    present: bool = True


async def read_format(client: Client, prefix: str) -> Stored:
    raw = await client.get(format_key(prefix))
    if raw is None:
        return Stored(LEGACY, LEGACY, "cortexflow 0.1.0 or earlier (no format key)", False)
    try:
        value = json.loads(raw)
        version = int(value["version"])
        return Stored(version, int(value.get("oldest_reader", version)), str(value["written_by"]))
    except (ValueError, KeyError, TypeError):
        raise DataFormatError(
            f"{format_key(prefix)} holds {raw!r}, not the data format cortexflow writes there "
            '(JSON: {"version": N, "oldest_reader": N, "written_by": "..."}): something else '
            "wrote this key. Restore it, or delete it if the data under this prefix is in the "
            "format of cortexflow 0.1.0 (format 1)"
        ) from None


def _encode(version: int, oldest_reader: int, code: Code) -> str:
    return json.dumps({"version": version, "oldest_reader": oldest_reader, "written_by": code.name})


def refusal(prefix: str, stored: Stored, code: Code) -> str | None:
    """Why ``code`` cannot work on data in ``stored``'s format (None: it can, maybe after its
    migrations). Pure: the whole compatibility rule."""
    where = f"the data under prefix {prefix!r} is in format {stored.version}"
    by = f"(written by {stored.written_by})"
    if stored.version > code.format and stored.oldest_reader > code.format:
        return (
            f"{where} {by}, which needs cortexflow of data format {stored.oldest_reader} or "
            f"newer; this {code.name} reads formats up to {code.format}. Upgrade cortexflow "
            "here to the release that wrote the data or a later one (CHANGELOG.md lists each "
            "release's format), or point this process at another server or redis.prefix"
        )
    missing = [n for n in range(stored.version + 1, code.format + 1) if n not in code.migrations]
    if missing:
        return (
            f"{where} {by}; this {code.name} writes format {code.format} and cannot migrate "
            f"data to format {missing[0]}. Run a release that migrates it first (CHANGELOG.md "
            "says which), or start on an empty server or another redis.prefix"
        )
    return None


async def ensure_format(
    client: Client,
    prefix: str,
    queues: Sequence[str] = (),
    *,
    code: Code = CURRENT,
    lock_ttl: float = 60.0,
) -> Stored:
    """Check that ``code`` can work on the data under ``prefix`` and migrate it to
    ``code.format`` when it is older; returns the format found. DataFormatError (nothing
    written) when it cannot, saying which format is stored, which this code reads and what to
    do. ``queues``: the configured queues, whose live workers an incompatible migration waits
    for (it refuses while workers too old for the migrated data run)."""
    stored = await read_format(client, prefix)
    if (why := refusal(prefix, stored, code)) is not None:
        raise DataFormatError(why)
    if stored.version >= code.format:
        if not stored.present:  # format 1 data (or none): say so, once, for later releases
            await _record(client, prefix, code)
        return stored
    await _migrate(client, prefix, queues, code, lock_ttl)
    return stored


async def _record(client: Client, prefix: str, code: Code) -> None:
    """Record the format of data that has no key yet. Only a note for later releases (no key
    reads as format 1 anyway), so a server that refuses the write (full under noeviction, a
    read-only replica, an ACL without it) does not stop a process that only reads or waits."""
    value = _encode(code.format, code.oldest_reader, code)
    with contextlib.suppress(ResponseError):
        await client.set(format_key(prefix), value, nx=True)


async def _migrate(
    client: Client, prefix: str, queues: Sequence[str], code: Code, lock_ttl: float
) -> None:
    """Run the migrations from the stored format up to ``code.format``, one process at a time:
    the others wait for the lock's holder to finish (or its lock to expire) and re-read."""
    token = uuid.uuid4().hex
    lock = format_lock_key(prefix)
    deadline = time.monotonic() + 2 * lock_ttl
    while not await client.set(lock, token, nx=True, px=int(lock_ttl * 1000)):
        if (await read_format(client, prefix)).version >= code.format:
            return
        if time.monotonic() > deadline:
            raise DataFormatError(
                f"another process has held the data format migration lock {lock} for over "
                f"{2 * lock_ttl:.0f}s; if no cortexflow process is migrating, delete that key"
            )
        await asyncio.sleep(0.1)
    try:
        stored = await read_format(client, prefix)  # another process may have finished
        if (why := refusal(prefix, stored, code)) is not None:
            raise DataFormatError(why)
        if stored.version < code.oldest_reader:
            await _refuse_if_old_workers(client, prefix, queues, stored, code)
        for version in range(stored.version + 1, code.format + 1):
            step = code.migrations[version]
            await step.run(client, prefix, queues)
            await client.set(format_key(prefix), _encode(version, step.oldest_reader, code))
    finally:
        # Not atomic: a lock that expired between the two calls and was taken by another
        # process loses its holder; migrations are idempotent, so that costs a re-run only.
        if await client.get(lock) == token.encode():
            await client.delete(lock)


async def _refuse_if_old_workers(
    client: Client, prefix: str, queues: Sequence[str], stored: Stored, code: Code
) -> None:
    """DataFormatError while live workers of a format below ``code.oldest_reader`` (or of a
    release that reports none: format 1) serve ``queues``: the migrated data would break them."""
    old: dict[str, list[str]] = {}
    for queue in queues:
        for info in await registry.live_workers(client, prefix, queue):
            if _format_of(info) < code.oldest_reader:
                old.setdefault(queue, []).append(str(info.get("id", "?")))
    if old:
        listing = "; ".join(f"{q}: {', '.join(ids)}" for q, ids in old.items())
        raise DataFormatError(
            f"the data under prefix {prefix!r} is in format {stored.version}, and this "
            f"{code.name} must migrate it to format {code.format}, which workers of format "
            f"below {code.oldest_reader} cannot work on; such workers are running ({listing}). "
            "Stop them first (stop the old release's workers, then start the new release's), "
            "or upgrade through a release that reads both formats"
        )


def _format_of(info: Mapping[str, Any]) -> int:
    try:
        return int(info.get("format", LEGACY))
    except (TypeError, ValueError):
        return LEGACY
