"""The original service's "Integration with API Service", in Python: an HTTP app that takes
chat webhooks on ``POST /webhooks/{channel}``, checks who sent them, queues them on
`webhook-processing` and answers at once; the queue's workers parse and answer them.

    python examples/api_service/app.py [--port 8080] [--contacts contacts.json] [--users users.json]
    python examples/api_service/app.py add-user USER_ID [--email ADDRESS]   # prints a token

This is the edge, so it is where requests are refused (nothing is queued for them):

- ``webchat`` needs ``Authorization: Bearer <token>``, a token of ``--users`` (``add-user``
  makes one). The message's user is the token's user, whatever the body says, and its email
  (if any) comes from ``--users``, never from the body: the reply cannot be sent elsewhere.
- ``telegram`` and ``whatsapp`` are verified here (401 when wrong) with
  ``TELEGRAM_WEBHOOK_SECRET`` / ``WHATSAPP_APP_SECRET``; a channel whose secret is unset answers
  503 unless ``--allow-unverified`` is given.
- Only the headers the workers need are kept (content type, user agent, WhatsApp's
  signature); Telegram's secret header is stored as its SHA-256 digest, not as the secret.
- Bodies over 256 KiB get 413; more than ``--rate`` requests a second from one client get 429;
  a provider message id seen within ``--replay-window`` seconds is acknowledged but not queued
  again (replay protection).

``--contacts``: a JSON object ``{"telegram:<user id>": "<email>"}``: what this service knows
about its Telegram/WhatsApp users. A known sender's email goes along as ``metadata``, so the
reply is emailed; other senders get it in their in-app inbox.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from cortexflow import QueueManager, QueueName, get_queue_manager
from cortexflow.errors import PayloadError, RedisUnavailableError
from cortexflow.queues.channels import (
    CHANNELS,
    TELEGRAM_DIGEST_HEADER,
    MalformedWebhookError,
    SignatureError,
    header,
    telegram_digest,
)

MAX_BODY = 256 * 1024
# The request headers a job keeps: what the workers need, nothing that is a credential.
KEPT_HEADERS = {"content-type", "user-agent", "x-hub-signature-256"}

MANAGER = web.AppKey("manager", QueueManager)
CONTACTS = web.AppKey("contacts", dict)
USERS = web.AppKey("users", dict)
SETTINGS = web.AppKey("settings", dict)
HITS = web.AppKey("hits", dict)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def receive_webhook(request: web.Request) -> web.Response:
    channel = request.match_info["channel"]
    if channel not in CHANNELS:
        return _error(404, f"unknown channel {channel!r}")
    if not within_rate(request):
        return _error(429, "too many requests; slow down")
    try:
        raw_bytes = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the body is over {MAX_BODY:,} bytes")
    try:
        raw = raw_bytes.decode("utf-8")
        body = json.loads(raw)
    except ValueError:
        return _error(400, "the body is not UTF-8 JSON")
    if not isinstance(body, dict):
        return _error(400, "the body is not a JSON object")
    if channel == "webchat":
        return await receive_webchat(request, body)
    refusal = verify_at_edge(request, channel, raw_bytes)
    if refusal is not None:
        return refusal
    data = {
        "webhookId": f"wh-{uuid.uuid4().hex}",
        "channel": channel,
        "payload": body,
        "rawBody": raw,  # the exact bytes, for the signature check
        "headers": kept_headers(request.headers),
        "receivedAt": datetime.now(UTC).isoformat(),
    }
    email = known_email(request.app[CONTACTS], channel, body)
    if email:
        data["metadata"] = {"email": email}
    return await enqueue(request, channel, data, provider_ids(channel, body))


async def receive_webchat(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Your site's chat widget: the bearer token says who is writing; the body only what."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    user = request.app[USERS].get(token) if token else None
    if user is None:
        return web.json_response(
            {"error": "webchat needs Authorization: Bearer <token> of a known user"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "webchat: expected {text} as a string")
    payload: dict[str, Any] = {"userId": user["userId"], "text": text}
    if isinstance(body.get("messageId"), str):
        payload["messageId"] = f"{user['userId']}-{body['messageId']}"
    data: dict[str, Any] = {
        "webhookId": f"wh-{uuid.uuid4().hex}",
        "channel": "webchat",
        "payload": payload,
        "headers": kept_headers(request.headers),
        "receivedAt": datetime.now(UTC).isoformat(),
    }
    if user.get("email"):
        data["metadata"] = {"email": user["email"]}
    ids = [payload["messageId"]] if "messageId" in payload else []
    return await enqueue(request, "webchat", data, ids)


def verify_at_edge(request: web.Request, channel: str, raw: bytes) -> web.Response | None:
    """None when the request is signed by the provider; else the response refusing it."""
    spec = CHANNELS[channel]
    if spec.secret_env is None:
        return None
    secret = os.environ.get(spec.secret_env)
    if not secret:
        if request.app[SETTINGS]["allow_unverified"]:
            return None
        return _error(503, f"{channel} is not configured: set {spec.secret_env}")
    try:
        spec.verify(secret, dict(request.headers), raw)
    except SignatureError as exc:
        return _error(401, str(exc))
    return None


def kept_headers(headers: Any) -> dict[str, str]:
    kept = {k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS}
    token = header(dict(headers), "X-Telegram-Bot-Api-Secret-Token")
    if token is not None:
        kept[TELEGRAM_DIGEST_HEADER.lower()] = telegram_digest(token)
    return kept


def provider_ids(channel: str, body: dict[str, Any]) -> list[str]:
    """The ids the provider gave this delivery (a redelivery or a replay carries the same)."""
    if channel == "telegram" and "update_id" in body:
        return [str(body["update_id"])]
    try:
        return [m.message_id for m in CHANNELS[channel].parse(body) if m.message_id]
    except MalformedWebhookError:
        return []


async def enqueue(
    request: web.Request, channel: str, data: dict[str, Any], ids: list[str]
) -> web.Response:
    manager = request.app[MANAGER]
    window = request.app[SETTINGS]["replay_window"]
    try:
        marked = await remember(manager, channel, ids, window)
        if ids and not marked:
            return web.json_response({"success": True, "duplicate": True})
        try:
            job_id = await manager.add_job(
                QueueName.WEBHOOK_PROCESSING, f"process-{channel}-webhook", data
            )
        except BaseException:
            if marked:  # not queued after all: the provider's redelivery must get through
                client = await manager.redis_client()
                await client.delete(*marked)
            raise
    except PayloadError as exc:
        problems = [{"pointer": p, "message": m} for p, m in exc.violations]
        return web.json_response({"error": "invalid webhook", "violations": problems}, status=422)
    except RedisUnavailableError:
        return _error(503, "queue unavailable, retry later")
    # Return immediate acknowledgment
    return web.json_response({"success": True, "jobId": job_id})


async def remember(manager: QueueManager, channel: str, ids: list[str], window: int) -> list[str]:
    """Remember the provider ids for ``window`` seconds; the keys of those not seen before."""
    client = await manager.redis_client()
    prefix = manager.config.redis.prefix
    fresh = []
    for provider_id in ids:
        key = f"{prefix}:seen:{channel}:{hashlib.sha256(provider_id.encode()).hexdigest()[:32]}"
        if await client.set(key, 1, nx=True, ex=window):
            fresh.append(key)
    return fresh


def within_rate(request: web.Request) -> bool:
    """At most ``--rate`` requests per second per client address (a sliding one-second window)."""
    limit = request.app[SETTINGS]["rate"]
    hits: deque[float] = request.app[HITS][request.remote or "?"]
    now = time.monotonic()
    while hits and now - hits[0] > 1.0:
        hits.popleft()
    if len(hits) >= limit:
        return False
    hits.append(now)
    return True


def known_email(contacts: dict[str, str], channel: str, body: Any) -> str | None:
    """The email of the webhook's sender, if this service knows them."""
    try:
        messages = CHANNELS[channel].parse(body) if isinstance(body, dict) else []
    except MalformedWebhookError:
        return None  # the worker will fail it, with the reason
    for message in messages:
        if f"{channel}:{message.user_id}" in contacts:
            return contacts[f"{channel}:{message.user_id}"]
    return None


async def verify_whatsapp_subscription(request: web.Request) -> web.Response:
    """Meta's one-time GET handshake when the webhook URL is registered."""
    query = request.query
    token = os.environ.get("WHATSAPP_VERIFY_TOKEN")
    given = query.get("hub.verify_token", "")
    if query.get("hub.mode") == "subscribe" and token and secrets.compare_digest(given, token):
        return web.Response(text=query.get("hub.challenge", ""))
    return web.Response(status=403)


async def health(request: web.Request) -> web.Response:
    result = await request.app[MANAGER].health_check()
    return web.json_response(result, status=200 if result["healthy"] else 503)


def make_app(
    config: str | None = None,
    contacts: dict[str, str] | None = None,
    users: dict[str, dict[str, str]] | None = None,
    *,
    allow_unverified: bool = False,
    rate: int = 20,
    replay_window: int = 86_400,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[CONTACTS] = contacts or {}
    app[USERS] = users or {}
    app[SETTINGS] = {
        "allow_unverified": allow_unverified,
        "rate": rate,
        "replay_window": replay_window,
    }
    app[HITS] = defaultdict(deque)

    async def lifecycle(app: web.Application) -> Any:
        app[MANAGER] = get_queue_manager(config)  # ./queues.yaml or $CORTEXFLOW_FILE
        await app[MANAGER].connect()
        yield
        await app[MANAGER].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhooks/{channel}", receive_webhook)
    app.router.add_get("/webhooks/whatsapp", verify_whatsapp_subscription)
    app.router.add_get("/health", health)
    return app


def add_user(path: Path, user_id: str, email: str | None) -> str:
    """Add a webchat user to ``path`` (created 0600) and return their new token."""
    users = json.loads(path.read_text()) if path.exists() else {}
    token = secrets.token_urlsafe(24)
    users[token] = {"userId": user_id, **({"email": email} if email else {})}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f, indent=2)
    return token


def main() -> None:
    if sys.argv[1:2] == ["add-user"]:
        p = argparse.ArgumentParser(prog="app.py add-user")
        p.add_argument("user_id")
        p.add_argument("--email")
        p.add_argument("--users", type=Path, default=Path("users.json"))
        a = p.parse_args(sys.argv[2:])
        print(add_user(a.users, a.user_id, a.email))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-f", "--file", default=None, help="queues.yaml (default: ./queues.yaml)")
    parser.add_argument("--contacts", type=Path, default=None, help="JSON: channel:userId -> email")
    parser.add_argument(
        "--users", type=Path, default=Path("users.json"), help="webchat tokens (add-user)"
    )
    parser.add_argument("--allow-unverified", action="store_true", help="accept unsigned webhooks")
    parser.add_argument("--rate", type=int, default=20, help="requests per second per client")
    parser.add_argument("--replay-window", type=int, default=86_400, help="seconds")
    args = parser.parse_args()
    contacts = json.loads(args.contacts.read_text()) if args.contacts else {}
    users = json.loads(args.users.read_text()) if args.users.exists() else {}
    app = make_app(
        args.file,
        contacts,
        users,
        allow_unverified=args.allow_unverified,
        rate=args.rate,
        replay_window=args.replay_window,
    )
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
