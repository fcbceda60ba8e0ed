"""The author's commands: `regimen stats`, `regimen subscribers import/export`,
`regimen secret generate`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app
from service.core.database import Database
from service.core.models import (
    Consent,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
)
from service.core.settings import load_settings
from service.readers.import_export import EXPORT_COLUMNS
from tests.helpers import new_subscription
from tests.integration import test_admin


def run(coroutine_factory: object, url: str) -> object:
    async def main() -> object:
        db = Database(url)
        try:
            return await coroutine_factory(db)  # type: ignore[operator]
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_stats_prints_the_funnel(author_env: str) -> None:
    run(test_admin.seed, author_env)
    result = CliRunner().invoke(app, ["stats", "--days", "7"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["day", "signups", "confirm", "page", "confirmed", "regimen",
                                "clicks"]
    days = [line.split() for line in lines[2:9]]
    assert len(days) == 7
    assert sum(int(day[1]) for day in days) == 3
    assert sum(int(day[5]) for day in days) == 3
    assert "  confirmed                                 1  33% of signups" in lines
    assert any(line.startswith("  opened the page, never confirmed") and
               line.endswith("1  50% of those who saw the button") for line in lines)


def test_secret_generate_makes_a_usable_secret() -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["secret", "generate"]).output.strip()
    second = runner.invoke(app, ["secret", "generate"]).output.strip()
    assert first != second
    assert len(first) >= 64
    settings = load_settings(_env_file=None, env="production", secret_keys=first,
                             base_url="https://regimen.example.net", mail_url="smtp://mx:25")
    assert settings.secret_keys == [first]


IMPORT_CSV = """\
email,consented_at,source_url,consent_ip,notes
Known@Example.org,2024-03-01T09:30:00Z,https://blog.example.org/old-post,192.0.2.7,a
fresh1@example.org,,https://blog.example.org/post,,
not an address,,,,
fresh2@example.org,,,,
FRESH1@example.org,,,,duplicate
held@example.org,,,,
fresh3@example.org,yesterday,,,
fresh4@example.org,,,,
naive@example.org,2024-03-02 10:00:00,,,
"""


async def _hold(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all(new_subscription("held@example.org", status=SubscriberStatus.CONFIRMED))


async def _state(db: Database) -> tuple[dict[str, Subscriber], list[OutboxMessage],
                                        dict[int, Consent]]:
    async with db.transaction() as session:
        readers = {r.email: r for r in await session.scalars(select(Subscriber))}
        mails = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        consents = {c.subscriber_id: c for c in await session.scalars(select(Consent))}
    return readers, mails, consents


def test_import_confirms_consented_and_paces_the_rest(author_env: str, tmp_path: Path) -> None:
    run(_hold, author_env)
    source = tmp_path / "list.csv"
    source.write_text(IMPORT_CSV)
    started = datetime.now(UTC)
    result = CliRunner().invoke(app, ["subscribers", "import", str(source), "--per-hour", "60"])
    assert result.exit_code == 0, result.output
    assert ("2 imported as confirmed (recorded consent), 3 sent the confirmation mail, "
            "1 already on the list, 0 erased at their request (left out), "
            "3 skipped.") in result.output
    assert "line 4: not an email address" in result.output
    assert "line 6: fresh1@example.org appears twice" in result.output
    assert "line 8: consented_at 'yesterday' is not a date" in result.output

    readers, mails, consents = run(_state, author_env)  # type: ignore[misc]
    known = readers["known@example.org"]
    assert known.status is SubscriberStatus.CONFIRMED
    assert known.confirmed_at == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    assert consents[known.id].source_url == "https://blog.example.org/old-post"
    assert consents[known.id].confirm_ip == "192.0.2.7"
    assert readers["naive@example.org"].confirmed_at == datetime(2024, 3, 2, 10, tzinfo=UTC)
    # Consent on record: no mail. The rest: one confirmation each, a minute apart (60/hour).
    mailed = {m.subscriber_id: m for m in mails}
    assert known.id not in mailed
    order = ["fresh1@example.org", "fresh2@example.org", "fresh4@example.org"]
    assert sorted(mailed) == sorted(readers[e].id for e in order)
    assert {m.kind for m in mails} == {MailKind.CONFIRM}
    assert {m.status for m in mails} == {OutboxStatus.QUEUED}
    times = [mailed[readers[e].id].next_attempt_at for e in order]
    assert times[0] >= started - timedelta(seconds=1)
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [timedelta(minutes=1)] * 2
    for email in order:
        reader = readers[email]
        assert reader.status is SubscriberStatus.PENDING
        # The reminder a day later counts from when the confirmation actually goes.
        assert consents[reader.id].signed_up_at == mailed[reader.id].next_attempt_at
    assert consents[readers["fresh1@example.org"].id].source_url == \
        "https://blog.example.org/post"
    # Importing again changes nothing.
    again = CliRunner().invoke(app, ["subscribers", "import", str(source)])
    assert "0 imported as confirmed (recorded consent), 0 sent the confirmation mail, " \
        "6 already on the list" in again.output


def test_import_needs_an_email_column(author_env: str, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text("address\nsomeone@example.org\n")
    result = CliRunner().invoke(app, ["subscribers", "import", str(source)])
    assert result.exit_code == 2
    assert "must name the columns, one of them `email`" in result.output


def test_export_writes_every_reader(author_env: str, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(IMPORT_CSV)
    runner = CliRunner()
    assert runner.invoke(app, ["subscribers", "import", str(source)]).exit_code == 0
    result = runner.invoke(app, ["subscribers", "export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    by_email = {row["email"]: row for row in rows}
    assert sorted(by_email) == ["fresh1@example.org", "fresh2@example.org",
                                "fresh4@example.org", "held@example.org", "known@example.org",
                                "naive@example.org"]
    known = by_email["known@example.org"]
    assert known["status"] == "confirmed"
    assert datetime.fromisoformat(known["confirmed_at"]) == datetime(2024, 3, 1, 9, 30,
                                                                      tzinfo=UTC)
    assert known["source_url"] == "https://blog.example.org/old-post"
    assert known["consent_ip"] == "192.0.2.7"
    assert by_email["fresh2@example.org"]["status"] == "pending"
    assert by_email["fresh2@example.org"]["confirmed_at"] == ""
    target = tmp_path / "out.csv"
    assert runner.invoke(app, ["subscribers", "export", "-o", str(target)]).exit_code == 0
    assert target.read_text() == result.output


def test_several_web_workers_need_the_mail_worker_apart(author_env: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers above 1 needs --no-worker" in result.output
