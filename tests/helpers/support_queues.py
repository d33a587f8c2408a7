"""Harness for the tests of the shipped queues: a real SMTP server (aiosmtpd) whose answers a
test can script, a test queues.yaml derived from the shipped one with short backoffs, and a
tiny HTTP client.

(Named test_queues_* so it sits with the tests it serves; it holds no test itself.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

from cortexflow.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers as a test scripts it.

    ``data_replies[rcpt]``: replies to the next DATA commands for that recipient (then 250);
    a recipient starting with ``bounce`` is refused at RCPT with 550.
    """

    messages: list[EmailMessage] = field(default_factory=list)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    data_attempts: Counter[str] = field(default_factory=Counter)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("bounce"):
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.data_attempts[rcpt] += 1
            for rcpt in envelope.rcpt_tos:
                if self.data_replies.get(rcpt):
                    return self.data_replies[rcpt].pop(0)
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
        return "250 2.0.0 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]

    def wait_for(self, address: str, timeout: float = 30.0) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while not self.to(address):
            if time.monotonic() > deadline:
                raise AssertionError(f"no email to {address} within {timeout}s")
            time.sleep(0.05)
        return self.to(address)[0]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, str]]:
    """A real SMTP server on 127.0.0.1 and the SMTP_URL that reaches it."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, f"smtp://127.0.0.1:{port}?timeout=5"
    finally:
        controller.stop()


def body_text(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def write_test_project(folder: Path) -> Path:
    """The shipped queues.yaml with 100 ms backoffs (so retries are quick), and its schemas."""
    shipped = yaml.safe_load((REPO / "queues.yaml").read_text())
    shipped["defaults"]["backoff"] = {"type": "fixed", "delay": "100ms"}
    for queue in shipped["queues"].values():
        queue.pop("backoff", None)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "schemas", folder / "schemas", dirs_exist_ok=True)
    path = folder / "queues.yaml"
    path.write_text(yaml.safe_dump(shipped, sort_keys=False))
    return path


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request; (status, parsed JSON body or text)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def post_json(
    url: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    status, answer = http("POST", url, raw, {"content-type": "application/json", **(headers or {})})
    return status, answer, raw


def poll(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        time.sleep(0.05)


def telegram_update(
    user_id: int, text: str, update_id: int, first_name: str = "Ana"
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id * 10,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "chat": {"id": user_id, "type": "private", "first_name": first_name},
            "date": 1714564800,
            "text": text,
        },
    }


def whatsapp_webhook(wa_id: str, text: str, message_id: str, name: str = "Bo") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA-1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "PN-1",
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": message_id,
                                    "timestamp": "1714564800",
                                    "type": "text",
                                    "text": {"body": text},
                                },
                            ],
                        },
                    }
                ],
            }
        ],
    }


# -- processes -----------------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("REDIS_URL", "CORTEXFLOW_FILE", "CORTEXFLOW_PARENT_PID", "CORTEXFLOW_REDIS_URL"):
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Proc:
    """A long-running command (``cortexflow up``, the example app) in its own session, its
    output in a file; ``stop()`` ends it gracefully, then kills whatever of it is left."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.log_path = cwd / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float, count: int = 1) -> None:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while len(rx.findall(self.log())) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} x{count} not seen; log:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        log = self.log()
        children = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log)]
        children += [int(p) for p in re.findall(r"embedded server \(pid (\d+)\)", log)]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        for pid in [self.proc.pid, *children]:  # whatever did not stop by itself
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()


def cortexflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "cortexflow", *args]
