"""A local SMTP server (aiosmtpd, in a thread of the benchmark) that notes when each recipient's
email arrived, so the latency is measured on one clock: the benchmark's."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiosmtpd.controller import Controller

from cortexflow.embedded import free_port


class Mailbox:
    """aiosmtpd handler: ``arrived[address] = time.time()`` at the end of DATA."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        with self.lock:
            for address in envelope.rcpt_tos:
                self.arrived[address] = now
        return "250 OK"

    def count(self, addresses: set[str]) -> int:
        with self.lock:
            return sum(1 for a in addresses if a in self.arrived)

    def times(self, addresses: dict[str, float]) -> list[float]:
        """Seconds from each address's enqueue time to its email, for those that arrived."""
        with self.lock:
            return [self.arrived[a] - t for a, t in addresses.items() if a in self.arrived]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, str]]:
    """The mailbox and the SMTP_URL that reaches it (127.0.0.1, a free port)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, f"smtp://127.0.0.1:{port}?timeout=5"
    finally:
        controller.stop()
