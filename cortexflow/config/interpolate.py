"""``${VAR}`` and ``${VAR:-default}`` in queues.yaml values, replaced before validation.

Only string values are interpolated (never keys, never the raw text), so a variable can never
inject YAML structure. ``$$`` is a literal ``$``; a ``$`` followed by anything else is kept.
``${VAR:-default}`` uses the default when VAR is unset or empty (as in a POSIX shell).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\$(\$|\{)")
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


class InterpolationError(ValueError):
    """A ``${...}`` that cannot be replaced. ``code`` is env.unset or env.syntax."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        self.code = code
        self.hint = hint
        super().__init__(message)


def needs_interpolation(text: str) -> bool:
    return "$" in text and _TOKEN.search(text) is not None


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Return ``text`` with every ``${...}`` replaced from ``env``."""
    out: list[str] = []
    pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        if m.group(1) == "$":
            out.append("$")
            pos = m.end()
            continue
        close = text.find("}", m.end())
        if close < 0:
            raise InterpolationError(
                "env.syntax",
                f"unclosed ${{ in {text!r}",
                "write ${VAR} or ${VAR:-default}; a literal $ is written $$",
            )
        out.append(_lookup(text[m.end() : close], env))
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def _lookup(inner: str, env: Mapping[str, str]) -> str:
    m = _NAME.match(inner)
    if m is None:
        raise InterpolationError(
            "env.syntax",
            f"${{{inner}}} is not a variable reference",
            "write ${VAR} or ${VAR:-default}, VAR made of letters, digits and _",
        )
    name, default = m.group(1), m.group(2)
    value = env.get(name)
    if default is not None:
        return value if value else default
    if value is None:
        raise InterpolationError(
            "env.unset",
            f"environment variable {name} is not set (used as ${{{name}}})",
            f"set {name}, or give a default: ${{{name}:-value}}",
        )
    return value
