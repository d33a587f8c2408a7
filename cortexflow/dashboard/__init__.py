"""The web dashboard: a Starlette app (served by uvicorn) with the UI at ``/``, the JSON API
under ``/api/``, ``/metrics`` (Prometheus) and ``/healthz``. See docs/dashboard.md."""
