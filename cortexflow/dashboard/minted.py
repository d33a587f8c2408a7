"""Session ids minted while one request is handled (``mint``), for the session middleware
(dashboard/sessions.py) to store in Redis as the response starts. A module of its own so that
auth.py (which mints) and sessions.py (which stores, and imports auth.py) import no circle."""

from __future__ import annotations

import contextvars
import secrets

# id -> role, set by the Sessions middleware for the length of one request.
_minted: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "cortexflow_minted_sessions", default=None
)


def mint(role: str) -> str:
    """A new session id for ``role``; the middleware stores it when the response starts."""
    pending = _minted.get()
    if pending is None:
        raise RuntimeError("a dashboard session can only be made inside the Sessions middleware")
    session_id = secrets.token_urlsafe(32)
    pending[session_id] = role
    return session_id
