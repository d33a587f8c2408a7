"""Importing this module leaves a file behind: the !!python tags test asserts it never happens."""

import os
from pathlib import Path

Path(os.environ.get("CF_CANARY", os.devnull)).write_text("imported")


class Thing:
    pass


def touch() -> None:
    Path(os.environ.get("CF_CANARY", os.devnull)).write_text("called")
