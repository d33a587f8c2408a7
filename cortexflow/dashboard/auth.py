"""Who may use the dashboard: tokens, roles, the session cookie and CSRF tokens.

- ``$CORTEXFLOW_TOKEN``: the admin token (everything); ``$CORTEXFLOW_READ_TOKEN``: read-only
  (GET routes and /metrics). Neither set: a token generated once into ``.cortexflow/token``
  (mode 0600) next to queues.yaml, and used as the admin token.
- The JSON API takes ``Authorization: Bearer <token>``. A browser logs in once (``/?token=`` or
  the login form) and then carries an HttpOnly, SameSite=Strict cookie holding an HMAC of the
  token, never the token itself.
- A state change made with the cookie must also send ``X-CSRF-Token`` (an HMAC of the token
  the pages embed), so another site cannot make the browser act.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cortexflow.errors import UsageError

ADMIN = "admin"
READ = "read"
COOKIE = "cortexflow_session"
CSRF_HEADER = "x-csrf-token"
# Names of environment variables, not secrets.
ENV_TOKEN = "CORTEXFLOW_TOKEN"  # noqa: S105
ENV_READ_TOKEN = "CORTEXFLOW_READ_TOKEN"  # noqa: S105


@dataclass(frozen=True)
class Tokens:
    admin: str
    read: str | None = None
    # Where a generated admin token is kept (None: it came from the environment).
    file: Path | None = None


def load_tokens(env: Mapping[str, str], data_dir: Path) -> Tokens:
    """The tokens from the environment, else the one kept in ``data_dir/token`` (generated and
    written with mode 0600 the first time)."""
    admin = env.get(ENV_TOKEN, "").strip()
    read = env.get(ENV_READ_TOKEN, "").strip() or None
    if admin:
        return Tokens(admin, read)
    if read:
        raise UsageError(
            f"${ENV_READ_TOKEN} is set but ${ENV_TOKEN} is not: set an admin token too"
        )
    path = data_dir / "token"
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return Tokens(token, None, path)
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return Tokens(token, None, path)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, env: Mapping[str, str]) -> None:
    """Refuse to listen beyond this machine with a generated token nobody chose."""
    if not is_loopback(host) and not env.get(ENV_TOKEN, "").strip():
        raise UsageError(
            f"refusing to listen on {host} (not a loopback address) without a token: set "
            f"${ENV_TOKEN} (and optionally ${ENV_READ_TOKEN}) first"
        )


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class Auth:
    """Checks credentials against the tokens; holds no state besides them."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self._roles = [(tokens.admin, ADMIN)]
        if tokens.read:
            self._roles.append((tokens.read, READ))

    def role_for_token(self, token: str) -> str | None:
        for known, role in self._roles:
            if hmac.compare_digest(token.encode(), known.encode()):
                return role
        return None

    def role_for_bearer(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.role_for_token(token.strip())

    def session_for(self, role: str) -> str:
        """The cookie value of a browser logged in with ``role``'s token."""
        token = dict((r, t) for t, r in self._roles)[role]
        return f"{role}.{_mac(token, 'session')}"

    def role_for_session(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        role, _, mac = cookie.partition(".")
        for token, known in self._roles:
            if known == role and hmac.compare_digest(mac, _mac(token, "session")):
                return role
        return None

    def csrf_for(self, role: str) -> str:
        token = dict((r, t) for t, r in self._roles)[role]
        return _mac(token, "csrf")

    def csrf_ok(self, role: str, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value), self.csrf_for(role))
