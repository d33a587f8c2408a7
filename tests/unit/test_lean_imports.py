"""A worker process imports what it needs: taskiq's admin middleware (and with it aiohttp, ~9 MiB
per process) only when something uses it; using it still works as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_worker_and_the_shipped_handlers_import_no_aiohttp() -> None:
    out = _python(
        """
        import sys
        import cortexflow.worker.main
        import cortexflow.queues.notifications, cortexflow.queues.webhook_processing
        import taskiq
        print("aiohttp" in sys.modules)
        """
    )
    assert out == "False\n"


def test_the_deferred_admin_middleware_works_as_the_real_one() -> None:
    out = _python(
        """
        import sys
        import cortexflow.worker
        from taskiq.middlewares import TaskiqAdminMiddleware as T
        from taskiq.middlewares import taskiq_admin_middleware as module
        print("aiohttp" in sys.modules)
        class Mine(T):
            pass
        m = Mine(url="http://127.0.0.1:1", api_token="t")
        real = type(m).__mro__[1]
        print(real.__module__, real.__name__, T.__name__)
        print(isinstance(m, T), issubclass(Mine, T), module._logger.name)
        print("aiohttp" in sys.modules)
        """
    )
    assert out.split("\n")[:4] == [
        "False",
        "taskiq.middlewares.taskiq_admin_middleware TaskiqAdminMiddleware TaskiqAdminMiddleware",
        "True True taskiq.taskiq_admin_middleware",
        "True",
    ]
