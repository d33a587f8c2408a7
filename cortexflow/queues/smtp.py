"""Sending one email through an SMTP server named by a URL, and telling failures apart.

``SMTP_URL``: ``smtp://[user:password@]host[:port]`` (plain, port 25), ``smtps://...`` (implicit
TLS, port 465), ``smtp://...?starttls=1`` (STARTTLS, port 587). Login happens when the URL has
a user. Query options: ``timeout`` (seconds, default 30), ``from`` (the default sender; also
``$SMTP_FROM``). The password is never logged or shown: ``SmtpSettings.describe()`` omits it.

A failure that may pass (connection refused, timeout, a dropped connection, a 4xx reply) raises
``SmtpTransientError``, which the queue retries with its backoff; a 5xx reply (no such user,
message refused, bad credentials) raises ``UnrecoverableError``: retrying cannot help.
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from cortexflow.errors import UnrecoverableError

Security = Literal["none", "starttls", "tls"]


class SmtpTransientError(Exception):
    """The server could not take the message now; a later attempt may succeed."""


class SmtpPermanentError(UnrecoverableError):
    """The server refused the message for good (a 5xx reply)."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "noreply@localhost"
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, default_from: str | None = None) -> SmtpSettings:
        """Parse SMTP_URL; UnrecoverableError (without the password) when it is not one."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise UnrecoverableError(
                "SMTP_URL must look like smtp://user:password@host:587?starttls=1 or "
                f"smtps://host:465; got a {parts.scheme or 'scheme-less'} URL"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "0").lower() in ("1", "true", "yes", "on")
        security: Security = (
            "tls" if parts.scheme == "smtps" else "starttls" if starttls else "none"
        )
        try:
            port = parts.port or {"tls": 465, "starttls": 587, "none": 25}[security]
            timeout = float(query.get("timeout", "30"))
        except ValueError as exc:
            raise UnrecoverableError(f"SMTP_URL: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sender=query.get("from") or default_from or "noreply@localhost",
            timeout=timeout,
        )

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        scheme = "smtps" if self.security == "tls" else "smtp"
        return f"{scheme}://{user}{self.host}:{self.port}" + (
            "?starttls=1" if self.security == "starttls" else ""
        )


def build_message(data: dict[str, Any], sender: str, job_id: str) -> EmailMessage:
    """An email-sending payload as a message: text, plus HTML as multipart/alternative.

    The Message-ID is made from the job id, so a copy delivered twice (a retry after the
    server took the message but the connection dropped) can be recognised as one.
    """
    to = data["to"] if isinstance(data["to"], list) else [data["to"]]
    sender = data.get("from") or sender
    msg = EmailMessage()
    try:
        msg["From"] = sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = data["subject"]
    except ValueError as exc:  # e.g. a newline in a header: refused rather than injected
        raise UnrecoverableError(f"invalid header: {exc}") from None
    msg["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9._-]', '_', job_id)}.cortexflow@{domain}>"
    msg.set_content(data.get("body") or text_of(data.get("html") or ""))
    if data.get("html"):
        msg.add_alternative(data["html"], subtype="html")
    return msg


def text_of(markup: str) -> str:
    """A plain-text stand-in for an HTML-only email."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()


def send(settings: SmtpSettings, msg: EmailMessage) -> dict[str, Any]:
    """Deliver ``msg`` (blocking: run it in a thread). Returns the recipients the server
    refused while taking the message for the others, ``{address: [code, reply]}``."""
    try:
        with _connect(settings) as smtp:
            if settings.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            refused = smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
        codes = [code for code, _ in exc.recipients.values()]
        raise _by_code(min(codes), f"every recipient refused: {_replies(exc.recipients)}") from None
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        message = f"{settings.describe()} answered {exc.smtp_code} {reply}"
        raise _by_code(exc.smtp_code, message) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise UnrecoverableError(f"{settings.describe()}: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, dropped, TLS failed
        raise SmtpTransientError(f"{settings.describe()}: {type(exc).__name__}: {exc}") from exc
    return {addr: [code, reply.decode(errors="replace")] for addr, (code, reply) in refused.items()}


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "tls":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=ssl.create_default_context(),
        )
    return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)


def _by_code(code: int, message: str) -> Exception:
    if 500 <= code < 600:
        return SmtpPermanentError(message)
    return SmtpTransientError(message)


def _replies(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{addr}: {code} {reply.decode(errors='replace')}"
        for addr, (code, reply) in recipients.items()
    )
