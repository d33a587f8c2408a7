"""The README's promises that no other test covers: its two commands, and the files it names."""

from __future__ import annotations

import json
import re

import jsonschema

from tests.helpers.project import REPO

README = (REPO / "README.md").read_text()
BASH_BLOCKS = re.findall(r"^```bash\n(.*?)^```", README, re.S | re.M)


def test_first_command_installs_and_runs_up_second_is_what_ci_runs() -> None:
    first, second = BASH_BLOCKS[0].strip(), BASH_BLOCKS[1].strip()
    assert first.endswith("pip install . && cortexflow up")
    assert "make check" in second
    ci = (REPO / ".ci" / "run").read_text()
    assert second in ci, ".ci/run must run the README's test command"


def test_the_sample_payload_fits_its_queue() -> None:
    assert "examples/payloads/notifications.json" in README
    payload = json.loads((REPO / "examples/payloads/notifications.json").read_text())
    schema = json.loads((REPO / "schemas/payloads/notifications.json").read_text())
    jsonschema.validate(payload, schema)
