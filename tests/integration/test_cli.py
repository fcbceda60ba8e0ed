"""The `regimen` command as an author runs it: real processes, a real port, real mail."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.core.content import load_content
from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    OutboxStatus,
    SubscriberStatus,
    utcnow,
)
from tests.helpers import (
    DEFAULT_REGIMEN,
    PROJECT_ROOT,
    MailSink,
    free_port,
    links_in,
    new_subscription,
    shipped_single_file,
)

REGIMEN = [sys.executable, "-m", "service.cli"]


@pytest.fixture
def environment(tmp_path: Path, smtp_port: int) -> dict[str, str]:
    """A fresh SQLite install, as `make run` makes one, mailing to the test's SMTP server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGIMEN_")}
    port = free_port()
    env.update({
        "REGIMEN_DATA_DIR": str(tmp_path / "var"),
        "REGIMEN_BASE_URL": f"http://127.0.0.1:{port}",
        "REGIMEN_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "REGIMEN_CONTENT_PATH": str(PROJECT_ROOT / "content"),
        "PORT": str(port),
    })
    return env


@pytest.fixture
def cli_env(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in environment.items():
        monkeypatch.setenv(key, value)


async def _wait_until_up(base_url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        for _ in range(200):
            if process.returncode is not None:
                raise AssertionError(f"server exited with {process.returncode}")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError("server did not come up")


@pytest.fixture
async def server(
    environment: dict[str, str], smtp: MailSink, tmp_path: Path,
) -> AsyncIterator[str]:
    migrated = await asyncio.create_subprocess_exec(*REGIMEN, "migrate", env=environment,
                                                    cwd=PROJECT_ROOT)
    assert await migrated.wait() == 0
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *REGIMEN, "serve", "--port", environment["PORT"], env=environment,
            cwd=PROJECT_ROOT, stdout=log_file, stderr=log_file,
        )
    base_url = environment["REGIMEN_BASE_URL"]
    try:
        await _wait_until_up(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it.
        assert await process.wait() in (0, -signal.SIGTERM)
    output = log.read_text()
    assert "outbox worker" in output
    assert "stopped" in output
    assert "Traceback" not in output


async def test_serve_runs_the_journey_over_real_http(server: str, smtp: MailSink) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        home = await http.get(f"/{DEFAULT_REGIMEN}")
        assert 'action="/subscribe"' in home.text
        answer = await http.post("/subscribe", data={"email": "reader@example.org"})
        assert answer.status_code == 303
        [confirmation] = await smtp.wait_for(1)
        [confirm_url] = [url for url in links_in(confirmation) if "/confirm/" in url]
        assert confirm_url.startswith(server)
        confirmed = await http.post(confirm_url)
        assert confirmed.status_code == 200
        _, regimen_mail = await smtp.wait_for(2)
        [regimen_url] = [url for url in links_in(regimen_mail) if "/r/" in url]
        page = await http.get(regimen_url)
        assert "The gentle back exercise" in page.text
        ready = await http.get("/readyz")
        assert ready.json() == {"ready": True, "checks": {"database": "ok", "signups": "ok",
                                                            "worker": "ok"}}


def test_standalone_worker_stops_cleanly_on_sigterm(environment: dict[str, str]) -> None:
    subprocess.run([*REGIMEN, "migrate"], env=environment, cwd=PROJECT_ROOT, check=True,
                   capture_output=True)
    worker = subprocess.Popen([*REGIMEN, "worker"], env=environment, cwd=PROJECT_ROOT,
                              stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    for line in worker.stderr:  # wait until it has really started
        if "outbox worker" in line and "started" in line:
            break
    worker.send_signal(signal.SIGTERM)
    _, rest = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert "stopped" in rest
    assert "Traceback" not in rest


def test_embed_prints_a_plain_form(cli_env: None, environment: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["embed", "--source", "https://blog.example/post.html"])
    assert result.exit_code == 0
    base_url = environment["REGIMEN_BASE_URL"]
    assert f'<form class="regimen-signup" method="post" action="{base_url}/subscribe">' \
        in result.output
    assert 'name="source" value="https://blog.example/post.html"' in result.output
    assert 'name="website"' in result.output  # the honeypot
    # The only script is the optional last line, from the service itself; nothing else loads.
    *form, script = result.output.strip().splitlines()
    assert script == f'<script src="{base_url}/embed.js" async></script>'
    assert "<script" not in "\n".join(form)
    urls = set(re.findall(r"https?://[^\s\"<>]+", "\n".join(form)))
    assert urls == {f"{base_url}/subscribe", "https://blog.example/post.html"}


def test_bad_configuration_is_a_clear_message(
    cli_env: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGIMEN_ENV", "production")
    monkeypatch.setenv("REGIMEN_BASE_URL", "http://insecure.example")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "REGIMEN_SECRET_KEYS" in result.output
    assert "https" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_broken_content_stops_the_service_with_the_line(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    broken = tmp_path / "regimen.yaml"
    good = shipped_single_file()
    broken.write_text(good.replace("video_url: *gentle_back", "video_url: not-a-url", 1))
    monkeypatch.setenv("REGIMEN_CONTENT_PATH", str(broken))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    line = next(number for number, text in enumerate(good.splitlines(), start=1)
                if "video_url: *gentle_back" in text)
    assert re.search(rf"line {line}: units\.0\.exercises\.0\.video_url", result.output)


def test_migrate_creates_the_database(cli_env: None, environment: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 0
    assert (Path(environment["REGIMEN_DATA_DIR"]) / "regimen.db").exists()



def test_send_test_mails_one_of_each(cli_env: None, smtp: MailSink) -> None:
    result = CliRunner().invoke(app, ["send-test", "Author@Example.org"])
    assert result.exit_code == 0, result.output
    received = smtp.messages
    assert {str(m["To"]) for m in received} == {"author@example.org"}
    subjects = sorted(str(m["Subject"]) for m in received)
    lessons = load_content(PROJECT_ROOT / "content").default.lessons
    assert len(subjects) == 3 + len(lessons)
    assert any(s.startswith("Your free regimen") for s in subjects)
    assert any(s.startswith("Reminder") for s in subjects)
    # Each lesson of the default regimen, by its own subject.
    assert {lesson.subject for lesson in lessons} <= set(subjects)
    assert [line for line in result.output.splitlines() if line.startswith("sent: lesson")] \
        == [f"sent: lesson {lesson.key}" for lesson in lessons]


def test_lessons_preview_prints_a_lesson_with_sample_progress(cli_env: None) -> None:
    result = CliRunner().invoke(app, ["lessons", "preview", "--regimen", "sacro-iliac",
                                      "--lesson", "next-free-exercise"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Subject: Your next free exercise\n")
    text = " ".join(result.output.split())
    # The sample reader read it through and did the first two exercises.
    assert "You have marked 2 of the 10 exercises done so far." in text
    assert "Your next one is Arch and flatten <" in text
    assert "/go/arch-and-flatten?lesson=next-free-exercise>" in text


def test_lessons_preview_sends_it_when_asked(cli_env: None, smtp: MailSink) -> None:
    result = CliRunner().invoke(app, ["lessons", "preview", "--regimen", "sacro-iliac",
                                      "--lesson", "after-unit-1", "--to", "Author@Example.org"])
    assert result.exit_code == 0, result.output
    [sent] = smtp.messages
    assert str(sent["To"]) == "author@example.org"
    assert str(sent["Subject"]) == "When Unit 1 is done: what comes next"
    assert "/lessons/stop/" in sent["List-Unsubscribe"]


@pytest.mark.parametrize(("regimen", "lesson", "said"), [
    ("no-such", "after-unit-1", "No regimen 'no-such'; the content has: neck-and-shoulders, "
                                 "sacro-iliac"),
    ("sacro-iliac", "no-such", "No lesson 'no-such' in sacro-iliac; its lessons: "
                               "how-it-should-feel, next-free-exercise, after-unit-1"),
    ("neck-and-shoulders", "x", "its lessons: none"),
])
def test_lessons_preview_names_what_there_is(cli_env: None, regimen: str, lesson: str,
                                             said: str) -> None:
    result = CliRunner().invoke(app, ["lessons", "preview", "--regimen", regimen,
                                      "--lesson", lesson])
    assert result.exit_code == 2
    assert said in result.output


def test_send_test_says_when_the_server_is_away(cli_env: None) -> None:
    # No SMTP server is listening on the configured port in this test.
    result = CliRunner().invoke(app, ["send-test", "author@example.org"])
    assert result.exit_code == 1
    assert "not sent: confirm" in result.output


async def _queue_failed_and_sent(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        address, reader = new_subscription("reader@example.org", status=SubscriberStatus.PENDING)
        session.add_all([address, reader])
        await session.flush()
        old = utcnow() - timedelta(days=40)
        session.add_all([
            OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id, created_at=old,
                          status=OutboxStatus.FAILED,
                          last_error="SMTPRecipientRefused(550, '5.1.1 no such user', "
                                     "'reader@example.org')"),
            OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id, created_at=old,
                          status=OutboxStatus.SENT),
        ])
    await db.dispose()


def test_outbox_list_retry_and_purge(cli_env: None, environment: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    url = f"sqlite+aiosqlite:///{environment['REGIMEN_DATA_DIR']}/regimen.db"
    asyncio.run(_queue_failed_and_sent(url))

    listed = runner.invoke(app, ["outbox", "list", "--status", "failed"])
    assert listed.exit_code == 0
    assert "confirm    failed            1" in listed.output
    assert "r***@example.org" in listed.output
    # Masked in the server's error text too (issue 13).
    assert "reader@example.org" not in listed.output
    assert "5.1.1 no such user', 'r***@example.org'" in listed.output

    assert "1 message(s) queued again" in runner.invoke(app, ["outbox", "retry"]).output
    assert "confirm    queued            1" in runner.invoke(app, ["outbox", "list"]).output
    # The sent one is 40 days old; the requeued one counts from now.
    assert "1 message(s) deleted" in runner.invoke(app, ["outbox", "purge"]).output
    remaining = runner.invoke(app, ["outbox", "list"]).output
    assert "sent" not in remaining
    assert "queued" in remaining
