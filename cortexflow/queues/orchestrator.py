"""The orchestrator that answers chat messages, chosen by import path.

Set ``CORTEXFLOW_ORCHESTRATOR=package.module:Name`` to plug in your own (an LLM client, a
dialogue engine...). ``Name`` is a class (instantiated once per worker process with no
arguments) or an object with a ``reply(message)`` method, or a plain function
``reply(message)``; sync or async; it returns a ``Reply`` or just the reply's text.

The default, ``RuleBasedOrchestrator``, is deterministic and offline: a few keyword rules and
an echo, so the pipeline works end to end with no external service.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cortexflow.config.importer import ImportFromStringError, import_from_string
from cortexflow.errors import UnrecoverableError

ENV = "CORTEXFLOW_ORCHESTRATOR"
DEFAULT = "cortexflow.queues.orchestrator:RuleBasedOrchestrator"


@dataclass(frozen=True)
class Message:
    """What an orchestrator gets: a message-processing payload."""

    message_id: str
    channel: str
    user_id: str
    content: str
    timestamp: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Message:
        return cls(
            message_id=data["messageId"],
            channel=data["channelType"],
            user_id=data["userId"],
            content=data["content"],
            timestamp=data["timestamp"],
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class Reply:
    """The answer, and what producing it cost (summed by the analytics queue)."""

    text: str
    tokens: int = 0
    cost: float = 0.0


class Orchestrator(Protocol):
    def reply(self, message: Message) -> Any:
        """Return (or return an awaitable of) a Reply or a str."""


RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(hi|hello|hey|hola|good (morning|afternoon|evening))\b", re.I),
     "Hello{name}! How can I help you today?"),
    (re.compile(r"\b(help|support|agent|human)\b", re.I),
     "I can answer questions about opening hours and prices, or pass you to a teammate."),
    (re.compile(r"\b(price|prices|pricing|cost|plan|plans)\b", re.I),
     "Our plans start at 10 EUR a month; reply 'plans' for the details."),
    (re.compile(r"\b(hours|open|opening|close|closing)\b", re.I),
     "We are open Monday to Friday, 9:00 to 18:00 (CET)."),
    (re.compile(r"\b(thanks|thank you|gracias)\b", re.I),
     "You're welcome{name}!"),
]  # fmt: skip


class RuleBasedOrchestrator:
    """Replies from keyword rules; otherwise acknowledges the message, quoting it."""

    def reply(self, message: Message) -> Reply:
        name = message.metadata.get("name")
        suffix = f", {name}" if isinstance(name, str) and name else ""
        for pattern, template in RULES:
            if pattern.search(message.content):
                text = template.format(name=suffix)
                break
        else:
            text = f'Thanks for your message: "{message.content.strip()}". We will get back to you.'
        # A stand-in for an LLM's usage figures: words in and out.
        return Reply(text=text, tokens=len(message.content.split()) + len(text.split()))


async def ask(orchestrator: Orchestrator, message: Message) -> Reply:
    """Call ``reply`` (sync or async) and turn a plain string into a Reply."""
    out = orchestrator.reply(message)
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, Reply):
        return out
    if isinstance(out, str):
        return Reply(text=out)
    raise TypeError(f"the orchestrator returned {type(out).__name__}, not a Reply or a str")


def configured(settings: Mapping[str, Any] | None = None) -> Orchestrator:
    """The orchestrator named by the queue's ``settings.orchestrator`` in queues.yaml, else
    $CORTEXFLOW_ORCHESTRATOR, else the rule-based one."""
    spec = (settings or {}).get("orchestrator") or os.environ.get(ENV) or DEFAULT
    return load(str(spec))


@functools.cache
def load(spec: str) -> Orchestrator:
    """Import ``spec`` once per process; UnrecoverableError naming the problem if it fails."""
    try:
        obj = import_from_string(spec)
    except ImportFromStringError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        raise UnrecoverableError(f"orchestrator {spec}: {exc}{hint}") from None
    if inspect.isclass(obj):
        obj = obj()
    if hasattr(obj, "reply"):
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        return _FunctionOrchestrator(obj)
    raise UnrecoverableError(
        f"orchestrator {spec}: not a class, an object with reply() or a function"
    )


@dataclass(frozen=True)
class _FunctionOrchestrator:
    func: Any

    def reply(self, message: Message) -> Any:
        return self.func(message)
