"""Route guards: who is asking (token or session cookie), may they, and errors -> HTTP.

Every API handler is wrapped by ``api(write=...)``: 401 without valid credentials, 403 for a
read-only token on a write or a cookie write without its CSRF token, then cortexflow's errors
mapped to statuses (404 unknown queue/job, 422 invalid input, 409 a refused state change,
503 Redis unreachable, 507 Redis full: out of memory, refusing writes).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cortexflow.dashboard import sessions
from cortexflow.dashboard.auth import ADMIN, CSRF_HEADER, Auth
from cortexflow.errors import (
    CortexflowError,
    DataFormatError,
    JobNotFoundError,
    PayloadError,
    RedisUnavailableError,
    ServerFullError,
    UsageError,
)

Handler = Callable[[Request], Awaitable[Response]]


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class Principal:
    role: str
    via: str  # "bearer" or "cookie"


def identify(auth: Auth, request: Request) -> Principal | None:
    role = auth.role_for_bearer(request.headers.get("authorization"))
    if role:
        return Principal(role, "bearer")
    session = sessions.current(request.scope)  # looked up by the Sessions middleware
    return Principal(session.role, "cookie") if session else None


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="cortexflow"'} if status == 401 else None
    body = _utf8_safe({"error": message, **extra})
    return JSONResponse(body, status_code=status, headers=headers)


def _utf8_safe(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings written as an escape: an error may
    quote the request's own bad text (a key holding one), and the answer must still encode."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8_safe(v) for v in value]
    return value


def _map(exc: Exception) -> JSONResponse:
    if isinstance(exc, HTTPError):
        return error(exc.status, str(exc), **exc.extra)
    if isinstance(exc, PayloadError):
        violations = [{"pointer": p, "message": m} for p, m in exc.violations]
        return error(422, str(exc), violations=violations)
    if isinstance(exc, JobNotFoundError):
        return error(404, str(exc))
    if isinstance(exc, UsageError):
        return error(422, str(exc))
    if isinstance(exc, DataFormatError):  # it answers; its data is not for this release
        return error(503, str(exc))
    if isinstance(exc, ServerFullError):
        return error(507, str(exc), usedMemory=exc.used, maxmemory=exc.maxmemory)
    if isinstance(exc, OutOfMemoryError):  # a write other than an add (retry, pause, ...)
        return error(507, str(ServerFullError(None, None)))
    if isinstance(exc, RedisUnavailableError | RedisConnectionError | RedisTimeoutError):
        return error(503, f"Redis does not answer: {exc}")
    if isinstance(exc, CortexflowError):
        return error(409, str(exc))
    raise exc


def api(*, write: bool) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            auth: Auth = request.app.state.auth
            who = identify(auth, request)
            if who is None:
                return error(401, "a token is required: Authorization: Bearer <token>")
            if write and who.role != ADMIN:
                return error(403, "this token is read-only")
            csrf = request.headers.get(CSRF_HEADER)
            if write and who.via == "cookie" and not auth.csrf_ok(who.role, csrf):
                return error(403, "missing or wrong CSRF token (X-CSRF-Token)")
            request.state.principal = who
            try:
                return await fn(request)
            except Exception as exc:
                return _map(exc)

        return handler

    return wrap
