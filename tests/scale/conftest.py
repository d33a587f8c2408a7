"""Scale-out tests run real `cortexflow up` processes against shared servers and topologies."""

from __future__ import annotations

from tests.supervisor.conftest import start_up

__all__ = ["start_up"]
