"""Key names. All keys of one queue share the hash tag ``{prefix:queue}`` (Redis Cluster ready)."""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("waiting", "delayed", "active", "completed", "failed")


@dataclass(frozen=True)
class QueueKeys:
    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{{{self.prefix}:{self.queue}}}"

    def k(self, name: str) -> str:
        return f"{self.base}:{name}"

    @property
    def job_prefix(self) -> str:
        """Job hashes are ``<job_prefix><id>``; their logs ``<job_prefix><id>:logs``."""
        return f"{self.base}:j:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    @property
    def wait(self) -> str:  # ZSET id -> (1e6 - priority) * 2^32 + seq
        return self.k("wait")

    @property
    def delayed(self) -> str:  # ZSET id -> due time (ms)
        return self.k("delayed")

    @property
    def active(self) -> str:  # ZSET id -> lease deadline (ms)
        return self.k("active")

    @property
    def completed(self) -> str:  # ZSET id -> finished time (ms)
        return self.k("completed")

    @property
    def failed(self) -> str:  # ZSET id -> finished time (ms)
        return self.k("failed")

    @property
    def meta(self) -> str:  # HASH paused, seq, totals, renewed_at/resumed_at (lease_clock.lua)
        return self.k("meta")

    @property
    def limiter(self) -> str:  # ZSET of start times (sliding-window rate limit)
        return self.k("limiter")

    @property
    def marker(self) -> str:  # LIST of wake-up tokens that idle workers block on
        return self.k("marker")

    @property
    def dlq_outbox(self) -> str:  # LIST of ids failed for good, still to copy to dead_letter
        return self.k("dlq")

    @property
    def dlq_failed(self) -> str:  # LIST of outbox entries that could not be copied (set aside)
        return self.k("dlq:failed")

    @property
    def next_outbox(self) -> str:  # LIST of hand-off groups still to copy (a Cluster)
        return self.k("next")

    @property
    def next_failed(self) -> str:  # LIST of hand-off groups that could not be copied
        return self.k("next:failed")

    def join(self, join_id: str) -> str:  # HASH of a fan-out's join (include/pipeline.lua)
        return self.k("join:" + join_id)

    def logs(self, job_id: str) -> str:  # LIST of a job's log lines
        return self.job(job_id) + ":logs"

    @property
    def workers(self) -> str:  # ZSET worker id -> heartbeat deadline (ms)
        return self.k("workers")

    @property
    def worker_info(self) -> str:  # HASH worker id -> JSON
        return self.k("winfo")

    @property
    def expect(self) -> str:  # STRING expected worker processes, set by supervisors with a TTL
        return self.k("expect")

    def schedule(self, name: str) -> str:  # HASH a schedule's last tick, last run, last job
        return self.k(f"sched:{name}")

    @property
    def events(self) -> str:  # STREAM of state changes, capped (engine/events.py decodes it)
        return self.k("events")

    @property
    def metrics(self) -> str:
        """Metrics hashes are ``<metrics>:<minute>`` (epoch minute, kept 25 h) and
        ``<metrics>:total`` (all time); engine/history.py reads them."""
        return self.k("metrics")

    def metrics_minute(self, minute: int) -> str:
        return f"{self.metrics}:{minute}"

    @property
    def metrics_total(self) -> str:
        return f"{self.metrics}:total"

    def state_key(self, state: str) -> str:
        return {
            "waiting": self.wait,
            "delayed": self.delayed,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
        }[state]


def supervisors_key(prefix: str) -> str:
    return f"{{{prefix}}}:supervisors"


def supervisor_info_key(prefix: str) -> str:
    return f"{{{prefix}}}:supinfo"


def schedules_key(prefix: str) -> str:
    """HASH schedule name -> its definition (JSON), read by every supervisor's scheduler."""
    return f"{{{prefix}}}:schedules"


def schedulers_alive_key(prefix: str) -> str:
    """STRING: when (server ms) a scheduler last said it was running (catch_up: none)."""
    return f"{{{prefix}}}:schedulers-alive"


def format_key(prefix: str) -> str:
    """STRING (JSON): the data format of everything under ``prefix`` (engine/dataformat.py)."""
    return f"{{{prefix}}}:format"


def format_lock_key(prefix: str) -> str:
    """STRING (with a TTL): held by the one process migrating the data format."""
    return f"{{{prefix}}}:format:lock"


def dashboard_session_key(prefix: str, digest: str) -> str:
    """HASH of one dashboard login (role, token fingerprint), with the session's TTL. ``digest``
    is the SHA-256 of the session id, so the keys do not hold what a browser sends."""
    return f"{{{prefix}}}:dash:session:{digest}"


def dashboard_login_failures_key(prefix: str, client: str) -> str:
    """STRING: failed logins of one client address in the current window (expires with it)."""
    return f"{{{prefix}}}:dash:login-failures:{client}"
