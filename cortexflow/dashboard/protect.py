"""What every response and every request body of the dashboard goes through (pure ASGI).

- ``SecurityHeaders``: each response (pages, API, static files, errors, /healthz) carries a
  Content-Security-Policy that lets only the dashboard's own script and stylesheet run or load
  (no inline script, no framing, no plugins, no <base>), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
- ``BodyLimit``: a request body is counted while it is read and refused with 413 past its cap
  (``/login`` and ``/logout``: FORM_LIMIT; everything else: the dashboard's ``max_body``); a
  declared ``Content-Length`` over the cap is refused before any of the body is read. The
  connection is closed after a 413, so the rest of the body is never read.
- Errors Starlette raises itself (404 for an unknown route, 405) and unexpected exceptions are
  answered in JSON like the API's own errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("cortexflow.dashboard")

CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_RAW_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

FORM_LIMIT = 4 * 1024  # /login and /logout: a token and a CSRF value
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # API writes: a job of the engine's largest payload fits
FORM_PATHS = ("/login", "/logout")


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (replacing any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower().decode("latin-1") not in SECURITY_HEADERS
                ]
                message["headers"] = kept + _RAW_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        413,
        f"the request body is larger than the {limit:,} byte limit",
        headers={"Connection": "close"},
    )


class BodyLimit:
    """Caps request bodies: ``limit_for(path)`` bytes, counted as they arrive."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    def limit_for(self, path: str) -> int:
        return FORM_LIMIT if path in FORM_PATHS else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared == -1:
            await _answer(scope, receive, send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            exc = too_large(limit)
            await _answer(scope, receive, send, 413, str(exc.detail), exc.headers)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when there is none, -1 when it is not a number."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else -1
    return None


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    await JSONResponse({"error": message}, status_code=status, headers=headers)(
        scope, receive, send
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 4xx (no such route, method not allowed, body too large) as JSON."""
    assert isinstance(exc, HTTPException)
    message = exc.detail or "error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path!r}"
    headers = dict(exc.headers or {})
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: logged with its traceback, answered 500 in JSON. This answer
    is made outside the other middleware, so it carries the security headers itself."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "internal error (the dashboard's log has the traceback)"},
        status_code=500,
        headers=SECURITY_HEADERS,
    )


exception_handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: http_error,
    Exception: server_error,
}


def problem_with_event_id(text: str) -> str | None:
    """Why ``text`` is not a stream id a client may resume from (``<ms>`` or ``<ms>-<seq>``,
    each below 2**64), or None when it is one. The SSE route answers 400 with it, before the
    stream starts."""
    ms, dash, seq = text.partition("-")
    parts = [ms, seq] if dash else [ms]
    if all(p.isascii() and p.isdigit() and len(p) <= 20 and int(p) < 2**64 for p in parts):
        return None
    shown = json.dumps(text[:60])
    return f"{shown} is not an event id: use one the stream sent (e.g. 1764517200123-0) or 0"


def install(app: Any, max_body: int) -> None:
    """Add this module's middleware and error handlers to the Starlette ``app``: call it after
    every other ``add_middleware``, so the headers wrap every answer and bodies are capped
    before any other middleware or route reads them."""
    app.add_middleware(BodyLimit, max_body=max_body)
    app.add_middleware(SecurityHeaders)
    for exc_class, handler in exception_handlers.items():
        app.add_exception_handler(exc_class, handler)
