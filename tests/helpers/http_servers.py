"""Loopback HTTP servers for the outbound-webhook tests: they record what reaches them, and
answer as told (204, a redirect, a trickle, a huge body). The ``hook_server`` fixture of
tests/queues/conftest.py starts them and closes them after the test."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any


class HookServer:
    """A loopback HTTP server that records the paths POSTed to it; ``mode`` says how it answers:
    "ok" (204), "redirect" (302 to ``location``), "trickle" (a byte every 0.1 s), "huge" (200 MiB).
    """

    def __init__(self, mode: str = "ok", location: str = "") -> None:
        self.hits: list[str] = []
        self.write_failed = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.hits.append(self.path)
                try:
                    if mode == "redirect":
                        self.send_response(302)
                        self.send_header("Location", location)
                        self.end_headers()
                    elif mode == "trickle":
                        self.send_response(200)
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        for _ in range(600):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.1)
                    elif mode == "huge":
                        self.send_response(200)
                        self.send_header("Content-Length", str(200 * 1024 * 1024))
                        self.end_headers()
                        chunk = b"x" * 65536
                        for _ in range(3200):
                            self.wfile.write(chunk)
                    else:
                        self.send_response(204)
                        self.end_headers()
                except OSError:
                    outer.write_failed.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
