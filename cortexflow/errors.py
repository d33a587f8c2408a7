"""Exceptions and process exit codes shared by every layer.

The core raises these; only the CLI turns them into messages and exit codes.
"""

from __future__ import annotations

# Exit codes (docs/cli.md). EX_CONFIG is what a worker child exits with when its
# handler cannot be imported or the config is invalid: the supervisor marks the
# queue FATAL at once instead of restarting it.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
# sysexits' EX_TEMPFAIL: the server is full (maxmemory reached, writes refused); nothing was
# written, and the same command succeeds once there is room again.
EXIT_TEMPFAIL = 75
# sysexits' EX_NOPERM: the server answered but refused the credentials, the database number or
# (ACL) the permission: retrying will not help, fixing the URL or the server's ACL will.
EXIT_NOPERM = 77
EXIT_CONFIG = 78
# sysexits' EX_DATAERR: the data on the server is in a format this release cannot work on
# (engine/dataformat.py): upgrading cortexflow (or migrating the data) will, retrying will not.
EXIT_DATA_FORMAT = 65


class CortexflowError(Exception):
    """Base class of every error cortexflow raises on purpose."""


class UnrecoverableError(CortexflowError):
    """Raise from a handler to fail the job at once, whatever attempts remain."""


class UsageError(CortexflowError):
    """The caller asked for something that cannot be done as asked (bad argument, unknown queue)."""


class PayloadError(CortexflowError):
    """A job payload was refused at enqueue; nothing was written.

    ``violations`` lists ``(json_pointer, message)`` pairs, one per problem.
    """

    def __init__(self, queue: str, violations: list[tuple[str, str]]) -> None:
        self.queue = queue
        self.violations = violations
        lines = "; ".join(f"{ptr or '/'}: {msg}" for ptr, msg in violations)
        super().__init__(f"payload for queue {queue!r} refused: {lines}")


def _clause(reason: str) -> str:
    """``reason`` without its closing full stop, to be followed by ". ": redis-py's messages end
    with one ("Connection refused."), which gave "refused.. Start" in the CLI and the HTTP 503."""
    return reason.rstrip().rstrip(".")


class RedisUnavailableError(CortexflowError):
    """Redis/Valkey could not be reached. ``url`` is already redacted."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach Redis at {url}: {_clause(reason)}. Start the server (or `cortexflow "
            "up` for the embedded one), or point --redis-url / REDIS_URL / redis.url in "
            "queues.yaml at a reachable server."
        )


class RedisAuthError(RedisUnavailableError):
    """Redis/Valkey answered but refused us: authentication failed (wrong or missing password,
    unknown user), the database does not exist, or the ACL denies a command or key.

    A RedisUnavailableError too (the server cannot be used), so code that treats the server as
    down keeps doing so; ``str()`` says what is wrong and how to fix it. ``url`` is redacted.
    """

    def __init__(self, url: str, reason: str, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        CortexflowError.__init__(self, f"{problem} at {url}: {_clause(reason)}. {fix}")
        self.url = url
        self.reason = reason


class DataFormatError(RedisUnavailableError):
    """The server answered, but the data under the prefix is in a format this release cannot
    work on (written by a newer, incompatible release; or too old to migrate; or a migration
    that must wait for older workers to stop). ``str()`` says which format is stored, which
    this release reads, and what to do. A RedisUnavailableError too: the server cannot be used.
    """

    def __init__(self, message: str) -> None:
        CortexflowError.__init__(self, message)
        self.url = ""
        self.reason = message


class ServerFullError(CortexflowError):
    """The server refused a write because it is full: its ``maxmemory`` is reached and its
    ``maxmemory-policy`` (noeviction) refuses writes instead of deleting keys. Nothing was
    written; the same call succeeds once there is room. ``used`` and ``maxmemory`` are bytes
    (None when the server would not say)."""

    def __init__(self, used: int | None, maxmemory: int | None) -> None:
        self.used = used
        self.maxmemory = maxmemory
        if used is not None and maxmemory:
            state = (
                f"it uses {_size(used)} of its maxmemory of {_size(maxmemory)} "
                f"({100 * used / maxmemory:.0f}%)"
            )
        else:
            state = "its maxmemory is reached"
        super().__init__(
            f"the Redis server is full: {state}, and it refuses writes (maxmemory-policy "
            "noeviction), so nothing was written. Make room (finished jobs kept: lower "
            "`retention` in queues.yaml or run `cortexflow clean QUEUE --grace 1h`; a backlog: "
            "add workers) or raise the server's maxmemory (`CONFIG SET maxmemory 2gb` and in "
            "its config file), then try again."
        )


class EvictionPolicyError(CortexflowError):
    """The server's ``maxmemory-policy`` deletes keys when it is full (anything but
    noeviction), which loses jobs without an error; refused unless ``redis.allow_eviction``."""

    def __init__(self, url: str, policy: str) -> None:
        self.url = url
        self.policy = policy
        loss = (
            "keys that have a time to live (metrics, rate-limit windows, handlers' idempotency "
            "markers), which is lost without an error"
            if policy.startswith("volatile")
            else "keys, jobs among them, and those jobs are lost without an error"
        )
        super().__init__(
            f"Redis at {url} has maxmemory-policy {policy}: when it fills up it deletes {loss}. "
            "Set the policy to noeviction on that server (`CONFIG SET maxmemory-policy "
            "noeviction`, and in its config file or parameter group); or, to use it anyway, set "
            "`allow_eviction: true` under `redis:` in queues.yaml."
        )


def _size(n: int) -> str:
    """Bytes as a person reads them: 1.3 MB, 512 KB, 2.0 GB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class JobNotFoundError(CortexflowError):
    """No job with that id exists in that queue."""


class LeaseLostError(CortexflowError):
    """A run wrote progress or a log line to a job it no longer owns: its lease was lost (the
    job stalled and another run has it) or the job was removed. Nothing was written; a handler
    may catch and ignore it (its outcome will not be recorded either)."""


class ConfigError(CortexflowError):
    """queues.yaml is missing or invalid. ``str()`` is the rendered diagnostics.

    ``exit_code`` is 2 for a missing file (usage), 1 for an invalid one.
    """

    def __init__(
        self, message: str, diagnostics: tuple[object, ...] = (), exit_code: int = 1
    ) -> None:
        self.diagnostics = diagnostics
        self.exit_code = exit_code
        super().__init__(message)
