"""Job ids and data chosen by whoever adds jobs, against the admin's browser (headless
Chromium via Playwright, issue 23): the stored XSS through percent-encoded ids and the
`%2E%2E` retry that became retry-all are reproduced as an attacker would set them up, and shown
harmless; a Hypothesis property over arbitrary Unicode ids and data: every page and fragment
renders without running script, and every id that can be added is linked, read, retried and
removed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cortexflow.termsafe import escape_controls
from tests.helpers.dashboard import ADMIN_TOKEN, CHROMIUM, wait_until, workers

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)

# Every script the page did not ship: an alert/prompt, or anything the CSP blocked.
HOOK = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__report("csp " + e.violatedDirective + " " + e.blockedURI);
});
"""


class Watched:
    """A logged-in page whose unexpected script (alert, prompt, CSP violation) is recorded."""

    def __init__(self, browser: Any, base: str) -> None:
        self.ran: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.expose_binding("__report", lambda source, text: self.ran.append(text))
        self.context.add_init_script(HOOK)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15000)
        self.page.on("dialog", self._dialog)
        self.page.goto(f"{base}/?token={ADMIN_TOKEN}")

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm":  # the UI's own "Remove job ...?"
            dialog.accept()
        else:
            self.ran.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()


@pytest.fixture
def watched(browser: Any, base: str) -> Iterator[Watched]:
    w = Watched(browser, base)
    yield w
    w.context.close()


def add(base: str, job_id: str, data: Any = None, name: str = "n") -> httpx.Response:
    body = {"name": name, "data": data if data is not None else {}, "opts": {"jobId": job_id}}
    return httpx.post(
        f"{base}/api/queues/work/jobs",
        content=json.dumps(body).encode(),  # ensure_ascii: a lone surrogate travels as \\udxxx
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=20,
    )


def job(base: str, job_id: str) -> httpx.Response:
    return httpx.get(f"{base}/api/queues/work/jobs/{quote(job_id, safe='')}", headers=ADMIN)


XSS = "%3Cimg%20src%3Dx%20onerror%3Dalert(document.domain)%3E"
XSS_TWIN = quote(XSS, safe="")  # %253Cimg%2520src...


@pytest.mark.slow
def test_percent_encoded_ids_cannot_run_script_in_the_queue_page(
    watched: Watched, base: str
) -> None:
    """The reported attack: two ids, one the other's percent-encoding; the admin clicks the
    second in the queue page. It used to open the first's page, whose live fragment URL the
    server decoded into `<img ... onerror>` and whose 404 text the script made HTML."""
    assert add(base, XSS).status_code == 201
    assert add(base, XSS_TWIN).status_code == 201
    page = watched.page
    page.goto(f"{base}/queues/work")
    page.click(f"a:text-is('{XSS_TWIN}')")
    page.wait_for_timeout(3500)  # two refreshes of the live fragment
    assert watched.ran == []
    playwright_api.expect(page.locator("h1")).to_have_text(f"Job {XSS_TWIN}")
    playwright_api.expect(page.locator("#job-state")).to_have_text("waiting")
    assert httpx.get(f"{base}/api/queues/work/jobs/{quote(XSS, safe='')}", headers=ADMIN).json()
    # A fragment that answers 404 (the job removed meanwhile) shows the message as text.
    httpx.delete(f"{base}/api/queues/work/jobs/{quote(XSS_TWIN, safe='')}", headers=ADMIN)
    playwright_api.expect(page.locator("[data-live] p.error")).to_contain_text("no job")
    assert page.locator("[data-live] img").count() == 0
    assert watched.ran == []


def test_retry_of_a_dot_dot_id_retries_that_job_not_the_whole_queue(
    watched: Watched, base: str, project: Path, redis_url: str
) -> None:
    """`%2E%2E` and `%252E%252E`, both failed, with other failed jobs: clicking the second in
    the failed tab and pressing Retry used to POST .../jobs/%2E%2E/retry, which the browser
    folds into .../retry: every failed job of the queue was retried."""
    with workers(project, redis_url, ["work"]):
        ids = ["%2E%2E", "%252E%252E", "victim-1", "victim-2"]
        for job_id in ids:
            assert add(base, job_id, {"fail": "x"}).status_code == 201
        wait_until(
            lambda: all(job(base, j).json().get("state") == "failed" for j in ids),
            what="all failed",
        )
    page = watched.page
    page.goto(f"{base}/queues/work?state=failed")
    page.click("a:text-is('%252E%252E')")
    page.click("button:has-text('Retry')")
    playwright_api.expect(page.locator("#flash")).to_contain_text("Done")
    states = {j: job(base, j).json()["state"] for j in ids}
    assert states == {
        "%2E%2E": "failed",
        "%252E%252E": "waiting",
        "victim-1": "failed",
        "victim-2": "failed",
    }
    playwright_api.expect(page.locator("h1")).to_have_text("Job %252E%252E")
    assert watched.ran == []


# -- the property -----------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=24)
ids = st.one_of(
    any_text,
    st.sampled_from([XSS, XSS_TWIN, "%2E%2E", "%252E%252E", "..", "a/b", "\u202eevil", "<b>"]),
)
data = st.dictionaries(any_text, any_text | st.integers(), max_size=3)


# docs/api.md's rule, written out: 1-256 characters, not "." or "..", none of whitespace,
# ':', '/', control characters (C0, DEL, C1), lone surrogates, bidirectional overrides.
_FORBIDDEN = re.compile("[\\s:/\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _valid(job_id: str) -> bool:
    return 1 <= len(job_id) <= 256 and job_id not in (".", "..") and not _FORBIDDEN.search(job_id)


def _surrogate(value: Any) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(job_id=ids, payload=data, name=any_text)
def test_any_id_and_data_render_without_script_and_round_trip(
    watched: Watched, base: str, job_id: str, payload: dict[str, Any], name: str
) -> None:
    r = add(base, job_id, payload, name)
    if not _valid(job_id) or _surrogate(payload) or _surrogate(name):
        assert r.status_code == 422, r.text  # refused at add, with a JSON error
        assert r.json()["error"]
        event("refused at add")
        return
    event("added and round-tripped")
    assert r.status_code == 201 and r.json()["id"] == job_id, r.text
    page = watched.page
    encoded = quote(job_id, safe="")
    # Linked from the queue page (and its fragment), read on its page and fragment.
    for path in ("/", "/fragments/overview", "/fragments/queues/work", "/queues/work"):
        page.goto(base + path)
    link = page.locator(f'#jobs a[href="/queues/work/jobs/{encoded}"]')
    playwright_api.expect(link).to_have_text(escape_controls(job_id, keep_newlines=False))
    link.click()
    shown = escape_controls(job_id, keep_newlines=False)
    playwright_api.expect(page.locator("h1")).to_have_text(f"Job {shown}")
    playwright_api.expect(page.locator("#job-data")).to_be_visible()
    page.goto(f"{base}/fragments/queues/work/jobs/{encoded}")
    playwright_api.expect(page.locator("#job-state")).to_have_text("waiting")
    # Read and retried over the API (a waiting job: 409 naming this very job).
    assert job(base, job_id).json()["id"] == job_id
    retried = httpx.post(f"{base}/api/queues/work/jobs/{encoded}/retry", headers=ADMIN, timeout=20)
    assert retried.status_code == 409 and retried.json()["state"] == "waiting"
    # Removed with the job page's button (its confirm accepted).
    page.goto(f"{base}/queues/work/jobs/{encoded}")
    page.click("button:has-text('Remove')")
    page.wait_for_url(f"{base}/queues/work")
    assert job(base, job_id).status_code == 404
    assert watched.ran == [], watched.ran
