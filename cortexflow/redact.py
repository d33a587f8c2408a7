"""Hide secrets in URLs before they reach a log, an error message or a job's error text.

Used by config (``cortexflow config``), the engine (connection errors), the supervisor and the
worker, so it depends on nothing else in cortexflow.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

MASK = "***"


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host`` (passwords never reach logs).

    The userinfo is everything between ``scheme://`` and the *last* ``@`` of the URL, so a
    password holding ``/``, ``#``, ``?`` or ``@`` (which a URL parser would split elsewhere) is
    still hidden whole. Query options named ``*password`` (a Sentinel URL's
    ``sentinel_password``) are hidden too. Without ``://`` the text is not a URL we can read, so
    nothing of it is echoed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparseable url>" if ("@" in url or ":" in url) else url
    userinfo, at, hostpart = rest.rpartition("@")
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
