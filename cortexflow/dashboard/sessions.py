"""Dashboard logins: server-side sessions in Redis, the login throttle, and who may log in.

One ASGI middleware (``Sessions``) around the whole app does it, so every route sees the same
answer to "which session is this?" and the login routes need no Redis code of their own:

- **Sessions.** A login (``POST /login``, ``/?token=``) gets a new random id
  (``secrets.token_urlsafe(32)``) as its cookie (``Auth.session_for``). Before the response
  leaves, Redis gets ``dashboard_session_key(prefix, sha256(id))``: the role and a fingerprint
  of the token (an HMAC keyed by the token over the id), with a TTL of ``SESSION_TTL``. Every
  dashboard process on the same Redis and prefix shares them. A request carrying the cookie is
  looked up once, here (one HGETALL); it counts only while the fingerprint matches the current
  token of its role, so a changed token revokes every session made with the old one (the key
  is deleted when next seen). A response that deletes the cookie (``POST /logout``) deletes the
  session, so a copied cookie stops working too.
- **Who may log in.** ``POST /login`` and ``?token=`` are refused (403) when the browser says
  the request comes from another site (``Sec-Fetch-Site`` other than ``same-origin``/``none``),
  or, for browsers that do not send it, when ``Origin`` is not this host: no login CSRF.
- **Throttle.** A request that presents a credential (``POST /login``, ``?token=``, an
  ``Authorization`` header) and gets 401 counts as a failure of its client address (an IPv6
  address by its /64) in Redis, ``LOGIN_FAILURES`` per ``LOGIN_WINDOW`` shared by every
  process; past that, each process refuses that address's credentials with 429 and
  ``Retry-After`` until the window ends, checked in memory first, so good requests cost no
  Redis call.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.exceptions import RedisError

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard.auth import COOKIE, Auth
from cortexflow.dashboard.minted import _minted
from cortexflow.engine.connection import Client
from cortexflow.engine.keys import dashboard_login_failures_key, dashboard_session_key
from cortexflow.errors import RedisUnavailableError

SESSION_TTL = 30 * 86400  # as long as the cookie lives (pages.SESSION_DAYS)
LOGIN_FAILURES = 10  # failed logins of one client address per window ...
LOGIN_WINDOW = 60  # ... seconds; past them, 429 until the window ends
BLOCKED_MAX = 10_000  # addresses held blocked in memory at most

SCOPE_KEY = "cortexflow.session"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Session:
    id: str
    role: str


def current(scope: Scope) -> Session | None:
    """The session the request's cookie belongs to (None: no cookie, or not a live session)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Session) else None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def client_address(scope: Scope) -> str:
    """The client's address as throttled: an IPv6 address by its /64 (one host's share)."""
    client = scope.get("client")
    host = str(client[0]) if client else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def _default_port(scheme: str) -> str:
    return "443" if scheme in ("https", "wss") else "80"


def cross_site(headers: dict[str, str], scheme: str) -> str | None:
    """Why a login request came from another site (None: it did not, as far as it says)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site.strip().lower() in ("same-origin", "none"):
            return None
        return f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None  # not a browser, or one too old to tell: SameSite and CSRF still hold
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.hostname:
        return f"Origin: {origin}"
    host = headers.get("host", "")
    ours = urlsplit(f"{scheme}://{host}")
    theirs = (parts.hostname.lower(), str(parts.port or _default_port(parts.scheme)))
    try:
        mine = ((ours.hostname or "").lower(), str(ours.port or _default_port(scheme)))
    except ValueError:
        return f"Origin: {origin}"
    # Behind a TLS proxy the app sees http while the browser says https: the host decides.
    if theirs[0] != mine[0] or (theirs[1] != mine[1] and parts.scheme == scheme):
        return f"Origin: {origin}"
    return None


class LoginThrottle:
    """Failed logins per client address: counted in Redis (shared by every dashboard process),
    blocks remembered in this process until the window ends."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: int = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._blocked: dict[str, float] = {}

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again (None: it may now)."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[address]
            return None
        return max(1, math.ceil(left))

    async def failed(self, client: Client, prefix: str, address: str) -> None:
        key = dashboard_login_failures_key(prefix, address)
        count = int(await client.incr(key))
        ttl_ms = int(await client.pttl(key))
        if ttl_ms < 0:
            await client.expire(key, self.window)
            ttl_ms = self.window * 1000
        if count >= self.limit:
            if len(self._blocked) >= BLOCKED_MAX:
                now = time.monotonic()
                self._blocked = {a: t for a, t in self._blocked.items() if t > now}
            if len(self._blocked) < BLOCKED_MAX:
                self._blocked[address] = time.monotonic() + ttl_ms / 1000


class SessionStore:
    def __init__(self, auth: Auth, manager: QueueManager, ttl: int = SESSION_TTL) -> None:
        self.auth = auth
        self.manager = manager
        self.ttl = ttl

    def _key(self, session_id: str) -> str:
        return dashboard_session_key(self.manager.config.redis.prefix, _digest(session_id))

    async def client(self) -> Client:
        return await self.manager.redis_client()

    async def create(self, session_id: str, role: str) -> None:
        fingerprint = self.auth.fingerprint(role, session_id)
        assert fingerprint is not None, role
        client = await self.client()
        key = self._key(session_id)
        await client.hset(key, mapping={"role": role, "fp": fingerprint})
        await client.expire(key, self.ttl)

    async def find(self, session_id: str) -> Session | None:
        if len(session_id) > 256:
            return None
        client = await self.client()
        raw: Any = await client.hgetall(self._key(session_id))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        role, stored = fields.get("role"), fields.get("fp")
        if not role or not stored:
            return None
        expected = self.auth.fingerprint(role, session_id)
        if expected is None or not hmac.compare_digest(expected, stored):
            await client.delete(self._key(session_id))  # made with a token no longer in use
            return None
        return Session(session_id, role)

    async def revoke(self, session_id: str) -> None:
        await (await self.client()).delete(self._key(session_id))


def _deletes_cookie(value: str, attributes: str) -> bool:
    low = attributes.lower()
    return value in ("", '""') or "max-age=0" in low.replace(" ", "")


def _set_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """(value, the whole header) of each Set-Cookie of the session cookie."""
    out = []
    for name, value in headers:
        if name.lower() != b"set-cookie":
            continue
        text = value.decode("latin-1")
        first, _, _rest = text.partition(";")
        cookie_name, _, cookie_value = first.partition("=")
        if cookie_name.strip() == COOKIE:
            out.append((cookie_value.strip(), text))
    return out


async def _json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class Sessions:
    """The ASGI middleware described in the module's docstring."""

    def __init__(self, app: ASGIApp, auth: Auth, manager: QueueManager) -> None:
        self.app = app
        self.store = SessionStore(auth, manager)
        self.throttle = LoginThrottle()
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        logging_in = (scope["method"] == "POST" and scope["path"] == "/login") or (
            "token" in query and scope["method"] in ("GET", "HEAD")
        )
        presents = logging_in or "authorization" in headers
        address = client_address(scope)
        if logging_in:
            why = cross_site(headers, scope.get("scheme", "http"))
            if why is not None:
                await _json(send, 403, {"error": f"refused: a login from another site ({why})"}, {})
                return
        if presents:
            wait = self.throttle.retry_after(address)
            if wait is not None:
                await _json(
                    send,
                    429,
                    {"error": f"too many failed logins from {address}; retry in {wait}s"},
                    {"Retry-After": str(wait)},
                )
                return
        cookie = _cookie(headers)
        if cookie is not None:
            try:
                scope[SCOPE_KEY] = await self.store.find(cookie)
            except (RedisError, RedisUnavailableError, OSError):
                scope[SCOPE_KEY] = None  # Redis down: no session (the routes say 503 anyway)
        pending: dict[str, str] = {}
        token = _minted.set(pending)
        refused = False

        async def sending(message: Message) -> None:
            nonlocal refused
            if refused:
                return
            if message["type"] == "http.response.start":
                try:
                    await self._on_response(scope, message, pending, presents, address)
                except (RedisError, RedisUnavailableError, OSError) as exc:
                    refused = True
                    await _json(send, 503, {"error": f"Redis does not answer: {exc}"}, {})
                    return
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _minted.reset(token)

    async def _on_response(
        self,
        scope: Scope,
        message: Message,
        pending: dict[str, str],
        presents: bool,
        address: str,
    ) -> None:
        for value, header in _set_cookies(message.get("headers", [])):
            if value in pending:
                await self.store.create(value, pending.pop(value))
            elif _deletes_cookie(value, header):
                session = current(scope)
                if session is not None:
                    await self.store.revoke(session.id)
        if message["status"] == 401 and presents:
            try:
                client = await self.manager.redis_client()
                await self.throttle.failed(client, self.manager.config.redis.prefix, address)
            except (RedisError, RedisUnavailableError, OSError):
                pass  # Redis down: nothing to guess at; the 401 goes out as it is
