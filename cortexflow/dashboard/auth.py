"""Who may use the dashboard: tokens, roles, the session cookie and CSRF tokens.

- ``$CORTEXFLOW_TOKEN``: the admin token (everything); ``$CORTEXFLOW_READ_TOKEN``: read-only
  (GET routes and /metrics). Neither set: a token generated once into ``.cortexflow/token``
  next to queues.yaml, and used as the admin token. The folder is made 0700 and the file is
  created 0600 without following links (O_EXCL|O_NOFOLLOW); a token file that is a link, is
  not a regular file, belongs to another user or that others may read or write is refused.
- Beyond loopback, the tokens must be chosen (from the environment) and 16+ characters long.
- The JSON API takes ``Authorization: Bearer <token>``. A browser logs in once (``/?token=`` or
  the login form) and then carries an HttpOnly, SameSite=Strict cookie holding a random
  session id, kept server-side in Redis (dashboard/sessions.py), never the token.
- A state change made with the cookie must also send ``X-CSRF-Token`` (an HMAC of the token
  the pages embed), so another site cannot make the browser act.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cortexflow.dashboard.minted import mint
from cortexflow.errors import UsageError

ADMIN = "admin"
READ = "read"
COOKIE = "cortexflow_session"
CSRF_HEADER = "x-csrf-token"
# Names of environment variables, not secrets.
ENV_TOKEN = "CORTEXFLOW_TOKEN"  # noqa: S105
ENV_READ_TOKEN = "CORTEXFLOW_READ_TOKEN"  # noqa: S105
# A token that guards a dashboard reachable from other hosts: at least this long.
MIN_TOKEN = 16


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
    token, path = _token_file(data_dir)
    return Tokens(token, None, path)


def private_folder(path: Path) -> None:
    """Create ``path`` (``.cortexflow/``) 0700 whatever the umask, or check the one there: a
    folder of this user's, tightened to 0700 (as the embedded server does)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise UsageError(
            f"cannot create {path}, where the dashboard keeps its generated token: "
            f"{exc.strerror or exc}; make {path.parent} writable, or set ${ENV_TOKEN}"
        ) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UsageError(
            f"{path} is not a folder (a link or a file); remove it (cortexflow recreates it), "
            f"or set ${ENV_TOKEN}"
        )
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): remove "
            f"it (cortexflow recreates it), or set ${ENV_TOKEN}"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _token_file(data_dir: Path) -> tuple[str, Path]:
    """The token kept in ``data_dir/token``, generated there the first time: written to a new
    file (O_EXCL|O_NOFOLLOW, 0600), then linked into place, so a reader never sees it half
    written and nothing already at that path (a file, a link) is ever written through."""
    private_folder(data_dir)
    path = data_dir / "token"
    if not os.path.lexists(path):
        token = secrets.token_urlsafe(32)
        tmp = data_dir / f".token-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            with contextlib.suppress(FileExistsError):  # another process was first: use its
                os.link(tmp, path)
        finally:
            tmp.unlink()
    return _read_token_file(path), path


def _read_token_file(path: Path) -> str:
    fix = f"remove it (a new token is generated) or set ${ENV_TOKEN}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UsageError(f"{path} is a symbolic link, refused as a token file: {fix}") from None
        raise UsageError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path} is not a regular file, refused as a token file: {fix}")
        if info.st_uid != os.geteuid():
            raise UsageError(
                f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}), so "
                f"someone else may have chosen that token: {fix}"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise UsageError(
                f"{path} is mode {stat.S_IMODE(info.st_mode):04o}: other users may read or "
                f"change it; run `chmod 600 {path}` (or {fix})"
            )
        token = f.read(4096).decode("utf-8", "replace").strip()
    if not token:
        raise UsageError(f"the token file {path} is empty: {fix}")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, env: Mapping[str, str]) -> None:
    """Refuse to listen beyond this machine with a generated token nobody chose, or with a
    token short enough to guess."""
    if is_loopback(host):
        return
    if not env.get(ENV_TOKEN, "").strip():
        raise UsageError(
            f"refusing to listen on {host} (not a loopback address) without a token: set "
            f"${ENV_TOKEN} (and optionally ${ENV_READ_TOKEN}) first"
        )
    for name in (ENV_TOKEN, ENV_READ_TOKEN):
        value = env.get(name, "").strip()
        if value and len(value) < MIN_TOKEN:
            raise UsageError(
                f"refusing to listen on {host} (not a loopback address) with a {len(value)}-"
                f"character ${name}: use at least {MIN_TOKEN} characters (e.g. from "
                "`openssl rand -hex 24`)"
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

    def token_of(self, role: str) -> str | None:
        return next((t for t, r in self._roles if r == role), None)

    def session_for(self, role: str) -> str:
        """The cookie value of a browser logging in with ``role``'s token: a new random session
        id, stored in Redis by the session middleware before the response leaves."""
        return mint(role)

    def fingerprint(self, role: str, session_id: str) -> str | None:
        """What a session stores of the token it was made with (an HMAC over its id, keyed by
        the token); None when ``role`` has no token now."""
        token = self.token_of(role)
        return None if token is None else _mac(token, "session:" + session_id)

    def csrf_for(self, role: str) -> str:
        token = dict((r, t) for t, r in self._roles)[role]
        return _mac(token, "csrf")

    def csrf_ok(self, role: str, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value), self.csrf_for(role))
