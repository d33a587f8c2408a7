"""The original service's "Integration with API Service", in Python: an HTTP app that takes
chat webhooks on ``POST /webhooks/{channel}``, queues them on `webhook-processing` and answers
at once; the queue's workers verify, parse and answer them.

    python examples/api_service/app.py [--port 8080] [--contacts contacts.json]

``--contacts``: a JSON object ``{"telegram:<user id>": "<email>"}``: what this service knows
about its users. A known sender's email goes along as ``metadata``, so the reply is emailed;
other senders get it in their in-app inbox.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from cortexflow import QueueManager, QueueName, get_queue_manager
from cortexflow.errors import PayloadError, RedisUnavailableError
from cortexflow.queues.channels import CHANNELS, MalformedWebhookError

# Credentials of *this* service are not the webhook's business: never stored in Redis.
DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization"}

MANAGER = web.AppKey("manager", QueueManager)
CONTACTS = web.AppKey("contacts", dict)


async def receive_webhook(request: web.Request) -> web.Response:
    channel = request.match_info["channel"]
    if channel not in CHANNELS:
        return web.json_response({"error": f"unknown channel {channel!r}"}, status=404)
    try:
        raw = (await request.read()).decode("utf-8")
        body = json.loads(raw)
    except ValueError:
        return web.json_response({"error": "the body is not UTF-8 JSON"}, status=400)
    data = {
        "webhookId": f"wh-{uuid.uuid4().hex}",
        "channel": channel,
        "payload": body,
        "rawBody": raw,  # the exact bytes, for the signature check
        "headers": {k.lower(): v for k, v in request.headers.items()
                    if k.lower() not in DROPPED_HEADERS},
        "receivedAt": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    email = known_email(request.app[CONTACTS], channel, body)
    if email:
        data["metadata"] = {"email": email}
    try:
        job_id = await request.app[MANAGER].add_job(
            QueueName.WEBHOOK_PROCESSING, f"process-{channel}-webhook", data
        )
    except PayloadError as exc:
        problems = [{"pointer": p, "message": m} for p, m in exc.violations]
        return web.json_response({"error": "invalid webhook", "violations": problems}, status=422)
    except RedisUnavailableError:
        return web.json_response({"error": "queue unavailable, retry later"}, status=503)
    # Return immediate acknowledgment
    return web.json_response({"success": True, "jobId": job_id})


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
    if query.get("hub.mode") == "subscribe" and token and query.get("hub.verify_token") == token:
        return web.Response(text=query.get("hub.challenge", ""))
    return web.Response(status=403)


async def health(request: web.Request) -> web.Response:
    result = await request.app[MANAGER].health_check()
    return web.json_response(result, status=200 if result["healthy"] else 503)


def make_app(config: str | None = None, contacts: dict[str, str] | None = None) -> web.Application:
    app = web.Application()
    app[CONTACTS] = contacts or {}

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-f", "--file", default=None, help="queues.yaml (default: ./queues.yaml)")
    parser.add_argument("--contacts", type=Path, default=None, help="JSON: channel:userId -> email")
    args = parser.parse_args()
    contacts = json.loads(args.contacts.read_text()) if args.contacts else {}
    web.run_app(make_app(args.file, contacts), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
