"""The embedded server's tests run the real `cortexflow up` too (an app beside it, a restart)."""

from __future__ import annotations

from tests.supervisor.conftest import start_up

__all__ = ["start_up"]
