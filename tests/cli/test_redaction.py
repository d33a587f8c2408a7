"""Secrets in URLs never reach the terminal, a log or a job's error, whatever they contain.

A password may hold / # ? @ : (unencoded, as people paste them); a URL parser then cuts the
URL elsewhere and quotes a piece of the password in its error. Every such path is tried here
through the real CLI, the engine's connect() and the SMTP settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexflow.engine.connection import connect
from cortexflow.errors import RedisUnavailableError
from cortexflow.redact import redact_url
from tests.helpers.procs import run_cli

PASSWORDS = ["s3cr/et", "s3cr#et", "s3cr?et", "s3cr@et", "s3:cr:et", "s3cr%2Fet", "sécr€t", "p"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@db.example.com:6379/0",
        "redis://app:{pw}@db.example.com/0",
        "rediss://app:{pw}@db.example.com:6380/1?ssl_cert_reqs=required",
        "unix://:{pw}@/run/valkey.sock?db=0",
        "redis+sentinel://app:{pw}@s1:26379,s2:26379/mymaster/0",
        "smtp://mailer:{pw}@mail.example.com:587?starttls=1",
    ],
)
def test_redact_url_hides_the_whole_password(template: str, password: str) -> None:
    url = template.format(pw=password)
    shown = redact_url(url)
    assert "***" in shown
    if len(password) > 1:
        for piece in [password, *password.replace("?", "/").replace("#", "/").split("/")]:
            if len(piece) >= 3:
                assert piece not in shown, shown


def test_redact_url_hides_password_options_and_never_echoes_what_it_cannot_read() -> None:
    assert "hunter2" not in redact_url("redis://h/0?password=hunter2")
    assert redact_url("not a url with user:secret") == "<unparseable url>"
    assert "hunter2" not in redact_url("user:hunter2@host")


@pytest.mark.parametrize("password", ["Zq9x/Wv7k", "Zq9x#Wv7k?Pp3m", "Zq9x:Wv7k", "Zq9x/Wv"])
def test_connect_errors_never_quote_the_password(password: str) -> None:
    url = f"redis://:{password}@db.example.com:6379/0"
    try:
        connect(url)
    except RedisUnavailableError as exc:
        message = str(exc)
    else:  # parsed, by luck of the characters: nothing to check
        return
    for piece in [password, *password.replace("#", "/").replace("?", "/").split("/")]:
        assert piece not in message, message
    assert "percent-encoded" in message


def test_scrub_secrets_masks_every_piece_of_the_userinfo() -> None:
    from cortexflow.redact import scrub_secrets

    url = "redis://app:s3cr/et@db/0"
    assert scrub_secrets("Port could not be cast to integer value as 's3cr'", url) == (
        "Port could not be cast to integer value as '***'"
    )


@pytest.mark.parametrize("password", ["Zq9x/Wv7k", "Zq9x#Wv7k", "Zq9x?Wv7k"])
def test_the_cli_never_prints_the_password(tmp_path: Path, password: str) -> None:
    (tmp_path / "queues.yaml").write_text(
        "version: 1\nredis:\n  url: ${REDIS_URL}\nqueues:\n  a:\n    handler: h:f\n"
    )
    url = f"redis://:{password}@127.0.0.1:1/0"
    for args in (["config"], ["stats"], ["enqueue", "a", "-"], ["health"], ["status"]):
        r = run_cli(*args, cwd=tmp_path, env={"REDIS_URL": url}, input="{}", timeout=90)
        shown = r.stdout + r.stderr
        assert "Traceback" not in shown, shown
        assert password not in shown, (args, shown)
        assert password.replace("#", "/").replace("?", "/").split("/")[0] not in shown, (
            args,
            shown,
        )


def test_a_password_in_argv_gets_a_warning(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n  a:\n    handler: h:f\n")
    r = run_cli("stats", "--redis-url", "redis://:Zq9xWv7k@127.0.0.1:1/0", cwd=tmp_path)
    assert r.returncode == 69
    assert "`ps` shows to every user" in r.stderr and "REDIS_URL" in r.stderr
    assert "Zq9xWv7k" not in r.stderr


def test_a_password_set_where_the_url_goes_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(
        "version: 1\nredis:\n  url: ${REDIS_URL}\nqueues:\n  a:\n    handler: h:f\n"
    )
    r = run_cli("stats", cwd=tmp_path, env={"REDIS_URL": "Zq9xWv7kPp3m"})
    assert r.returncode == 69
    assert "Zq9xWv7kPp3m" not in r.stdout + r.stderr
    assert "<unparseable url>" in r.stderr
