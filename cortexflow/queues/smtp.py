"""Sending one email through an SMTP server named by a URL, and telling failures apart.

``SMTP_URL``: ``smtp://[user:password@]host[:port]`` (plain, port 25), ``smtps://...`` (implicit
TLS, port 465), ``smtp://...?starttls=1`` (STARTTLS, port 587). Login happens when the URL has
a user, and only over TLS: a user on a plain ``smtp://`` URL is refused unless the URL also says
``auth_without_tls=1`` (a relay on the same host, say). Query options: ``starttls``,
``timeout`` (seconds, default 30), ``from`` (the default sender; also ``$SMTP_FROM``),
``auth_without_tls``; any other is refused, so a typo (``startls=1``) cannot silently send the
password in clear. A password holding ``/ # ? @`` must be percent-encoded. The password is
never logged or shown: ``SmtpSettings.describe()`` omits it, and errors never quote the URL.

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
from email.utils import formatdate, getaddresses
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from cortexflow.errors import UnrecoverableError
from cortexflow.redact import invalid_url_reason

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
        """Parse SMTP_URL; UnrecoverableError (never quoting the URL) when it is not one."""
        if _cut_userinfo(url):
            raise UnrecoverableError(
                "SMTP_URL: the user or password holds / ? or #, which must be percent-encoded "
                "(%2F %3F %23); the URL is not shown, as it holds the password"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise UnrecoverableError(f"SMTP_URL: {invalid_url_reason(url, exc)}") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise UnrecoverableError(
                "SMTP_URL must look like smtp://user:password@host:587?starttls=1 or "
                f"smtps://host:465; got a {parts.scheme or 'scheme-less'} URL"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - set(SMTP_OPTIONS))
        if unknown:
            raise UnrecoverableError(
                f"SMTP_URL: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(SMTP_OPTIONS)}"
            )
        starttls = _flag(query, "starttls")
        security: Security = (
            "tls" if parts.scheme == "smtps" else "starttls" if starttls else "none"
        )
        if parts.username and security == "none" and not _flag(query, "auth_without_tls"):
            raise UnrecoverableError(
                "SMTP_URL has a user but no TLS, so the password would cross the network in "
                "clear: use smtps:// or ?starttls=1, or add ?auth_without_tls=1 if the server "
                "is on this host or a trusted network"
            )
        try:
            port = parts.port or {"tls": 465, "starttls": 587, "none": 25}[security]
            timeout = float(query.get("timeout", "30"))
        except ValueError:
            raise UnrecoverableError("SMTP_URL: timeout must be a number of seconds") from None
        return cls(
            host=parts.hostname,
            port=port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sender=query.get("from") or default_from or "noreply@localhost",
            timeout=timeout,
        )

    def scrub(self, text: str) -> str:
        """``text`` without the password (for errors that end up in a job's stored error)."""
        return text.replace(self.password, "***") if self.password else text

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        scheme = "smtps" if self.security == "tls" else "smtp"
        return f"{scheme}://{user}{self.host}:{self.port}" + (
            "?starttls=1" if self.security == "starttls" else ""
        )


SMTP_OPTIONS = ("starttls", "timeout", "from", "auth_without_tls")


def _cut_userinfo(url: str) -> bool:
    """Did an unencoded / ? or # in the user or password make the parser end the host early?

    Then an ``@`` shows up after the "host": in the path or fragment, or in the query's first
    item before any ``=`` (``from=bot@x.io`` in a query is fine)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    first_key = parts.query.split("&")[0].split("=")[0]
    return "@" in parts.path or "@" in parts.fragment or "@" in first_key


_TRUE = ("1", "true", "yes", "on")


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "0").lower()
    if value not in (*_TRUE, "0", "false", "no", "off"):
        raise UnrecoverableError(f"SMTP_URL: {name}={value!r} is not true or false")
    return value in _TRUE


def single_address(text: Any, what: str) -> str:
    """``text`` if it is exactly one email address, else UnrecoverableError.

    ``"a@b.c, d@e.f"`` passes a JSON Schema ``email`` format check (which looks for an ``@``)
    yet becomes two recipients in a header: one address per string, always."""
    if not isinstance(text, str) or any(c in text for c in ",;\r\n"):
        raise UnrecoverableError(f"{what} must be one email address, got {text!r}")
    pairs = getaddresses([text])
    if len(pairs) != 1 or "@" not in pairs[0][1] or pairs[0][1].count("@") != 1:
        raise UnrecoverableError(f"{what} must be one email address, got {text!r}")
    return text


def build_message(data: dict[str, Any], sender: str, job_id: str) -> EmailMessage:
    """An email-sending payload as a message: text, plus HTML as multipart/alternative.

    The Message-ID is made from the job id, so a copy delivered twice (a retry after the
    server took the message but the connection dropped) can be recognised as one.
    """
    to = data["to"] if isinstance(data["to"], list) else [data["to"]]
    to = [single_address(address, "`to`") for address in to]
    sender = single_address(data.get("from") or sender, "`from`")
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
        raise _by_code(exc.smtp_code, settings.scrub(message)) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise UnrecoverableError(settings.scrub(f"{settings.describe()}: {exc}")) from None
    except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, dropped, TLS failed
        message = f"{settings.describe()}: {type(exc).__name__}: {exc}"
        raise SmtpTransientError(settings.scrub(message)) from None
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
