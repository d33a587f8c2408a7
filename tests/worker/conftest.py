"""The worker's tests: real `cortexflow worker` processes (the engine's ``workers``) and real
`cortexflow up` runs (the supervisor's ``start_up``), with handlers that block, hang or die."""

from __future__ import annotations

from tests.engine.conftest import workers
from tests.supervisor.conftest import start_up

__all__ = ["start_up", "workers"]
