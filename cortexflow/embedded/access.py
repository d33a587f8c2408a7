"""Who may reach the embedded server: its owner only, unless the operator opens it on purpose.

One concept: the server's door.

- ``.cortexflow/`` is 0700 and every file in it 0600 (directories 0700), whatever the umask,
  and it must belong to the user running cortexflow;
- the server listens on a unix socket inside that folder (``unixsocketperm 700``) and on no TCP
  port. The socket path is fixed per data folder, so a client reconnects to the same address
  after the server (or `up`) restarts. A path too long for a unix socket (about 107 bytes), or
  one a client could not find again from a URL (a name that is not UTF-8, a non-ASCII name
  under an ASCII locale), moves to a private per-user runtime folder, under a name derived
  from the data folder's path;
- ``CORTEXFLOW_EMBEDDED_LISTEN=host:port`` opens a TCP port as well, for other hosts; it
  requires ``CORTEXFLOW_EMBEDDED_PASSWORD`` (at least 16 characters), which the server then
  asks of every client, the local ones included (they read it from the folder's 0600
  ``auth.conf``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cortexflow.embedded.process import ServerError, preparing, url_safe

ENV_LISTEN = "CORTEXFLOW_EMBEDDED_LISTEN"
ENV_PASSWORD = "CORTEXFLOW_EMBEDDED_PASSWORD"  # noqa: S105 - the variable's name
SOCKET_NAME = "valkey.sock"
MIN_PASSWORD = 16
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), the final NUL included.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Exposure:
    """A TCP port the operator opened on purpose (``CORTEXFLOW_EMBEDDED_LISTEN``)."""

    host: str
    port: int
    password: str


def exposure_from_env(env: Mapping[str, str] | None = None) -> Exposure | None:
    """None (the default: unix socket only), or the TCP port asked for, with its password."""
    env = os.environ if env is None else env
    listen = env.get(ENV_LISTEN, "").strip()
    if not listen:
        return None
    host, colon, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ServerError(
            f"{ENV_LISTEN} must be host:port (e.g. 0.0.0.0:6380 or 10.0.0.5:6380); "
            "leave it unset to keep the embedded server reachable by its owner only"
        )
    password = env.get(ENV_PASSWORD, "")
    if len(password) < MIN_PASSWORD or any(ord(c) < 33 or ord(c) == 127 for c in password):
        raise ServerError(
            f"{ENV_LISTEN} opens the embedded server to other hosts, so {ENV_PASSWORD} must "
            f"hold a password of at least {MIN_PASSWORD} printable characters without spaces "
            "(e.g. from `openssl rand -hex 24`)"
        )
    return Exposure(host, int(port_text), password)


def secure_folder(path: Path) -> None:
    """Create ``path`` 0700 (or tighten it), refuse one another user owns, tighten its files."""
    with preparing("create", path):
        _secure_folder(path)


def _secure_folder(path: Path) -> None:
    if not path.is_symlink() and path.exists() and not path.is_dir():
        raise ServerError(
            f"{path}, where the embedded server keeps its data, is a file, not a folder; "
            "remove it (cortexflow recreates it), or set REDIS_URL (or redis.url in queues.yaml)"
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ServerError(f"{path} is not a directory; remove it, cortexflow recreates it")
    if info.st_uid != os.geteuid():
        raise ServerError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); the "
            "embedded server's data must be private to the user running it"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _tighten(Path(root) / name, 0o700)
        for name in files:
            _tighten(Path(root) / name, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        return  # a socket's access is set by unixsocketperm; a link is never followed
    if stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def socket_path(data_dir: Path) -> Path:
    """The server's unix socket for ``data_dir``: the same path every time for one folder."""
    data_dir = Path(data_dir).resolve()
    inside = data_dir / SOCKET_NAME
    if url_safe(inside) and len(os.fsencode(inside)) <= MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:20]
    return _runtime_dir() / f"{digest}.sock"


def _runtime_dir() -> Path:
    """This user's 0700 socket folder: $XDG_RUNTIME_DIR/cortexflow, or /tmp/cortexflow-UID."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir() and len(xdg) < 40:
        base = Path(xdg) / "cortexflow"
    else:
        base = Path(tempfile.gettempdir()) / f"cortexflow-{os.geteuid()}"
    with preparing("create", base, "where the embedded server's socket goes"):
        with contextlib.suppress(FileExistsError):  # a dangling link: refused below
            base.mkdir(mode=0o700, exist_ok=True)
        info = base.lstat()
    if (
        not url_safe(base)
        or stat.S_ISLNK(info.st_mode)
        or not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise ServerError(
            f"{base} (where the embedded server's socket goes, the data folder's path being too "
            "long for a unix socket or not UTF-8) is not a private folder of yours with a UTF-8 "
            "name; remove it (or point TMPDIR elsewhere), or run cortexflow from a folder with a "
            "shorter, UTF-8 path"
        )
    return base


def read_auth_file(path: Path) -> str | None:
    """The password of an ``auth.conf`` the server was started with (None without one)."""
    try:
        line = path.read_text().strip()
    except OSError:
        return None
    prefix = 'requirepass "'
    if not (line.startswith(prefix) and line.endswith('"')):
        return None
    body, out, i = line[len(prefix) : -1], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)
