"""`cortexflow dashboard`: resolve the tokens, build the app, serve it with uvicorn."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cortexflow.api.manager import QueueManager
from cortexflow.config.model import Config
from cortexflow.dashboard.auth import Auth, Tokens, check_bind, load_tokens
from cortexflow.dashboard.protect import DEFAULT_MAX_BODY
from cortexflow.embedded.folder import data_dir_for
from cortexflow.engine.connection import connect, ping
from cortexflow.engine.memory import check_eviction
from cortexflow.errors import CortexflowError, RedisUnavailableError, UsageError
from cortexflow.logs import resolve_format, setup_logging, uvicorn_log_config
from cortexflow.telemetry import setup_from_env


@dataclass(frozen=True)
class ServeOptions:
    config: Path
    redis_url: str | None
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_public: bool = False
    max_streams: int = 50
    # False (what `up` passes): never print the token, say where it is and how to see the URL.
    login_url: bool = True
    max_body: int = DEFAULT_MAX_BODY  # bytes of an API write's body (413 past it)
    log_format: str | None = None  # --log-format; None: $CORTEXFLOW_LOG_FORMAT, queues.yaml's


def listen(host: str, port: int) -> socket.socket:
    """The dashboard's listening socket on ``host``:``port`` (0: a free port, printed in the
    URL). IPv6 for an address with a colon, else IPv4 (as uvicorn binds: `localhost` is
    127.0.0.1 even where it also names ::1). A port in use is a clear error (exit 1), not
    uvicorn's log line."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # no IPv6 on this machine
        raise UsageError(f"--host {host!r}: this machine cannot listen there ({exc})") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart at once
    try:
        sock.bind((bare, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CortexflowError(
                f"the dashboard cannot listen on {host} port {port}: it is in use (another "
                "dashboard?). Stop that, or pick another port: --port 8001, or dashboard: "
                "port: in queues.yaml"
            ) from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"--host {host!r}: not an address of this machine ({exc.strerror or exc})"
            ) from None
        raise CortexflowError(f"the dashboard cannot listen on {host} port {port}: {exc}") from None
    return sock


def base_url(host: str, port: int) -> str:
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}/"


def login_url(host: str, port: int, tokens: Tokens) -> str:
    base = base_url(host, port)
    return f"{base}?token={tokens.admin}" if tokens.file is not None else base


def print_url(
    options: ServeOptions,
    env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """`cortexflow dashboard --print-url`: the URL to open (with the generated token, when the
    token is the generated one) for the host and port given, else queues.yaml's dashboard:
    section's, else the defaults."""
    from cortexflow.config import load_config

    if options.port == 0:
        raise UsageError(
            "--print-url needs the port the dashboard listens on: with --port 0 it picks one "
            "when it starts and prints its URL then"
        )
    env = os.environ if env is None else env
    config = load_config(options.config)
    tokens = load_tokens(env, data_dir_for(config))
    say(login_url(options.host, options.port, tokens))
    return 0


def check_policy(url: str | None, config: Config, say: Callable[[str], None]) -> None:
    """Refuse to start (EvictionPolicyError) on a server whose maxmemory-policy may delete
    jobs, unless queues.yaml allows it. A server that does not answer is not refused: the
    dashboard starts and /healthz answers 503 until it does. No URL: the embedded server,
    started with noeviction."""
    if not url:
        return

    async def check() -> None:
        client = connect(url, retries=1)
        try:
            await ping(client, url)
            if warning := await check_eviction(client, url, config.redis.allow_eviction):
                say(warning)
        except RedisUnavailableError:
            pass
        finally:
            await client.aclose()

    asyncio.run(check())


def serve(
    options: ServeOptions,
    env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run the dashboard until interrupted (SIGINT/SIGTERM: uvicorn's graceful shutdown)."""
    import uvicorn

    from cortexflow.dashboard.app import Settings, create_app

    env = os.environ if env is None else env
    check_bind(options.host, env)
    manager = QueueManager(options.config, options.redis_url)
    log_format = resolve_format(options.log_format, manager.config.logging.format, env)
    if log_format == "json":
        setup_logging("json")
        say = logging.getLogger("cortexflow.dashboard").info
    check_policy(options.redis_url or manager.config.redis.url, manager.config, say)
    tokens = load_tokens(env, data_dir_for(manager.config))
    settings = Settings(
        metrics_public=options.metrics_public,
        # the queue gauges over OpenTelemetry, when the OTEL_* variables ask for metrics
        otel_metrics=setup_from_env(traces=False)[1],
        max_streams=options.max_streams,
        max_body=options.max_body,
    )
    app = create_app(manager, Auth(tokens), settings)
    sock = listen(options.host, options.port)  # before the URL is printed: its real port
    options = dataclasses.replace(options, port=sock.getsockname()[1])
    url = login_url(options.host, options.port, tokens)
    if tokens.file is not None and not options.login_url:
        say(
            f"dashboard: serving {base_url(options.host, options.port)}; the "
            f"token is in {tokens.file} (`cortexflow dashboard --print-url -f "
            f"{options.config}` shows the login URL)"
        )
    elif tokens.file is not None:
        say(f"dashboard: open {url} (token kept in {tokens.file})")
    else:
        say(f"dashboard: open {url} and log in with $CORTEXFLOW_TOKEN")
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        lifespan="on",
        log_config=uvicorn_log_config(log_format) or uvicorn.config.LOGGING_CONFIG,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal under the handler
    # that was installed before it ran: this one only records, so SIGTERM ends with exit 0.
    stopped: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        signal.signal(signal.SIGTERM, previous)
    return 0
