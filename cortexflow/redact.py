"""Hide secrets in URLs before they reach a log, an error message or a job's error text.

Used by config (``cortexflow config``), the engine (connection errors), the supervisor and the
worker, so it depends on nothing else in cortexflow.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

MASK = "***"


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host`` (passwords never reach logs).

    The userinfo is everything between ``scheme://`` and the *last* ``@`` of the URL, so a
    password holding ``/``, ``#``, ``?`` or ``@`` (which a URL parser would split elsewhere) is
    still hidden whole. Query options named ``*password`` (a Sentinel URL's
    ``sentinel_password``) are hidden too. Without ``://`` the text is not a URL we can read, so
    nothing of it is echoed (it may be the password alone, set where the URL should be).
    A ``unix://`` URL's path may hold ``@`` too: see `_split_userinfo`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not a URL at all: perhaps the password itself, pasted where the URL goes.
        return "<unparseable url>" if url else url
    userinfo, at, hostpart = _split_userinfo(scheme, rest)
    if at:
        user = userinfo.split(":", 1)[0]
        if "/" in user or "?" in user or "#" in user:
            user = ""
        rest = f"{user}:{MASK}@{hostpart}" if user else f":{MASK}@{hostpart}"
    base, qmark, query = rest.partition("?")
    if qmark:
        query_part, hash_mark, fragment = query.partition("#")
        pairs = parse_qsl(query_part, keep_blank_values=True)
        if any(name.lower().endswith("password") for name, _ in pairs):
            hidden = [(k, MASK if k.lower().endswith("password") else v) for k, v in pairs]
            query_part = urlencode(hidden, safe="*")
        rest = f"{base}?{query_part}{hash_mark}{fragment}"
    return f"{scheme}://{rest}"


def _split_userinfo(scheme: str, rest: str) -> tuple[str, str, str]:
    """``rest`` (the URL after ``scheme://``) as (userinfo, "@", the rest), or ("", "", rest)
    without userinfo.

    A network URL's userinfo runs to the last ``@``. A ``unix://`` URL names a file, whose path
    may hold ``@`` itself (``unix:///srv/a@b/valkey.sock``): it has userinfo only when something
    stands between ``unix://`` and the path (``unix://:pw@/path``), and that userinfo ends at the
    last ``@`` that starts the absolute path (``@/``), else at the last ``@``."""
    if scheme.lower() != "unix":
        return rest.rpartition("@")
    if not rest or rest.startswith("/"):
        return "", "", rest
    end = rest.rfind("@/")
    if end < 0:
        return rest.rpartition("@")
    return rest[:end], "@", rest[end + 1 :]


def _secret_pieces(url: str) -> list[str]:
    """The parts of ``url`` that may be secret: its userinfo, whole and in the pieces a URL
    parser could cut it into, and the values of ``*password`` query options."""
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        return [url] if url else []
    pieces: list[str] = []
    userinfo, at, _host = _split_userinfo(scheme, rest)
    if at and userinfo:
        pieces += [userinfo, unquote(userinfo)]
        user, colon, password = userinfo.partition(":")
        if colon and password:
            pieces += [password, unquote(password)]
        for chunk in re.split(r"[:/?#@\[\]]", userinfo):
            if len(chunk) >= 3 and chunk != user:
                pieces += [chunk, unquote(chunk)]
    _base, _q, query = rest.partition("?")
    for name, value in parse_qsl(query.partition("#")[0], keep_blank_values=True):
        if name.lower().endswith("password") and value:
            pieces.append(value)
    return sorted({p for p in pieces if p}, key=len, reverse=True)


def scrub_secrets(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with every secret part of ``url`` masked.

    For messages written by code we do not control (redis-py's URL parser, smtplib), which
    may quote a piece of the URL they failed to parse."""
    for piece in _secret_pieces(url):
        text = text.replace(piece, MASK)
    return text


def invalid_url_reason(url: str, exc: Exception) -> str:
    """Why ``url`` could not be parsed, without any of its secrets.

    With credentials in the URL the parser's own message is not repeated at all: it quotes
    whatever piece it choked on, which may be a fragment of the password too short to mask."""
    scheme, _sep, rest = url.partition("://")
    if not _split_userinfo(scheme, rest)[1]:
        return f"invalid URL ({scrub_secrets(str(exc), url)})"
    return (
        "invalid URL (the parser's message is not shown: it may quote the password); a "
        "password holding / # ? @ : or % must be percent-encoded (%2F %23 %3F %40 %3A %25), "
        "e.g. python3 -c 'import urllib.parse, getpass; "
        'print(urllib.parse.quote(getpass.getpass(), safe=""))\''
    )


# scheme://user:password@ inside free text: the password runs to the token's last '@'.
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s/:@]*):(\S*)@")


def redact_urls_in(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` in it masked.

    For text cortexflow stores but did not write: a handler's error message and stack trace
    (an exception quoting a connection URL must not put its password into Redis, the AOF and
    dead letters)."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
