"""cortexflow: a declarative job-queue runner on taskiq and Redis/Valkey."""

from __future__ import annotations

from cortexflow.errors import UnrecoverableError

__version__ = "0.1.0"

__all__ = ["UnrecoverableError", "__version__"]
