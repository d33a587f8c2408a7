"""Schedule tests run real `cortexflow up` processes (the scheduler lives in the supervisor)."""

from __future__ import annotations

from tests.supervisor.conftest import start_up

__all__ = ["start_up"]
