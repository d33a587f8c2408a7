"""The README's first screen answers "how do I use this for my own queues" before it talks
about the shipped demo queues."""

from __future__ import annotations

import re

from tests.helpers.project import REPO

README = (REPO / "README.md").read_text()
FIRST_SCREEN = 100  # lines: the intro and the own-queues section fit in it


def test_own_queues_come_first() -> None:
    own = README.index("## Your own queues")
    for shipped in ("message-processing", "QueueName", "five", "dead-letters", "## Two commands"):
        assert own < README.index(shipped), f"{shipped!r} comes before 'Your own queues'"
    assert README[:own].count("\n") < 25, "the intro is longer than a screen"


def test_the_own_queues_section_shows_config_handler_enqueue_and_commands() -> None:
    section = README.split("## Your own queues", 1)[1].split("\n## ", 1)[0]
    assert section.count("\n") < FIRST_SCREEN
    assert "cortexflow init" in section and "```yaml" in section
    assert re.search(r"^queues:\n  \w", section, re.M), "no queue declared"
    assert "handler: myapp.jobs:" in section and "async def send_welcome(data, job)" in section
    assert "add_job(" in section
    for command in ("validate", "up", "enqueue", "stats"):
        assert f"cortexflow {command}" in section
    assert "docs/config.md" in section and "docs/testing.md" in section


def test_the_shipped_pipeline_has_its_own_page() -> None:
    queues_md = (REPO / "docs" / "queues.md").read_text()
    assert "## Adding jobs to each queue" in queues_md
    for queue in ("MESSAGE_PROCESSING", "WEBHOOK_PROCESSING", "EMAIL_SENDING", "ANALYTICS"):
        assert f"QueueName.{queue}," in queues_md
    assert "### Queue Types" not in README
