"""docs/testing.md runs as written: each code block is a file of one project (its path on the
first line), and pytest, run in that project as a user runs it, passes every test of it.

This covers what tests/docs/test_snippets.py cannot: the page's blocks are files of a project
that import one another (``from myapp.web import app``), and its tests must run under pytest,
with the cortexflow plugin, not merely be defined.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.project import REPO

DOC = REPO / "docs" / "testing.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
HEADER = re.compile(r"# ([\w./-]+\.(?:py|yaml|toml|ini))\n")
FILE_KINDS = {"py", "python", "yaml", "toml", "ini"}


def project_files(doc: Path) -> dict[str, str]:
    """path -> text of every py/python/yaml/toml/ini block (a later block of the same path
    continues the file); a code block of those kinds with no ``# path`` line is an error."""
    files: dict[str, str] = {}
    text = doc.read_text()
    for match in FENCE.finditer(text):
        kind, code = match.group(1), match.group(2)
        if kind not in FILE_KINDS:
            continue  # signatures (no language), shell sessions
        header = HEADER.match(code)
        line = text.count("\n", 0, match.start()) + 1
        assert header, f"{doc.name}:{line}: a {kind} block must start with `# <its path>`"
        path = header.group(1)
        files[path] = files.get(path, "") + ("\n\n" if path in files else "") + code
    return files


def test_every_example_of_testing_md_is_a_file_of_its_project() -> None:
    files = project_files(DOC)
    assert {"queues.yaml", "conftest.py", "myapp/jobs.py", "myapp/web.py"} <= set(files)
    tests = [path for path in files if path.startswith("tests/")]
    assert len(tests) >= 4, tests


def test_testing_md_project_passes_under_pytest(tmp_path: Path) -> None:
    files = project_files(DOC)
    project = tmp_path / "project"
    for path, code in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(code)
    expected = sum(len(re.findall(r"^(?:async )?def test_", c, re.M)) for c in files.values())

    # As a developer runs it: no REDIS_URL nor CORTEXFLOW_FILE, queues.yaml with no redis:.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CORTEXFLOW_FILE")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(rf"^{expected} passed\b", proc.stdout, re.M), proc.stdout[-2000:]
    assert not (project / ".cortexflow").exists(), "the app's manager used the folder's server"
