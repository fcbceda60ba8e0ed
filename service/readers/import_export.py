"""Bringing an existing list in (`regimen subscribers import`) and taking it out
(`regimen subscribers export`).

Import CSV (a header row, then one reader a row; columns in any order, unknown ones ignored):

- `email` (required);
- `consented_at`: when this reader gave recorded consent (ISO 8601, e.g. 2024-03-01T09:30:00Z;
  no zone means UTC). With it the reader is imported as confirmed and is mailed nothing;
- `source_url`: where they signed up, kept as consent evidence;
- `consent_ip`: the IP their consent was given from, if known.

A row without `consented_at` gets the confirmation mail, exactly as if the reader had signed up
on the blog. Those mails are paced: the n-th is scheduled `n / per_hour` hours from the start of
the import (its outbox row's `next_attempt_at`), so a big list does not go out in one burst and
the mail server's limits are respected. Addresses already held are left as they are.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.core import stale_figures
from service.core.database import Database
from service.core.models import (
    Consent,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
)
from service.core.outbox import queue_mail
from service.readers import privacy
from service.readers.addresses import InvalidAddress, normalize_address

BATCH = 500
DEFAULT_PER_HOUR = 500
EXPORT_COLUMNS = ("email", "regimen", "status", "created_at", "confirmed_at",
                  "unsubscribed_at", "suppressed_at", "source_url", "consent_ip")


class ImportProblem(ValueError):
    """The file cannot be imported at all (e.g. no `email` column)."""


@dataclass
class ImportResult:
    confirmed: int = 0
    mailed: int = 0
    already_held: int = 0
    erased: int = 0  # asked to be forgotten: an old list must not bring them back
    problems: list[str] = field(default_factory=list)
    last_mail_at: datetime | None = None


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    consented_at: datetime | None
    source_url: str | None
    consent_ip: str | None


def read_rows(file: TextIO, result: ImportResult) -> Iterator[Row]:
    """Valid rows, one at a time; bad ones are noted in `result.problems`."""
    reader = csv.DictReader(file)
    if reader.fieldnames is None or "email" not in reader.fieldnames:
        raise ImportProblem("the first line must name the columns, one of them `email`")
    seen: set[str] = set()
    for record in reader:
        line = reader.line_num
        try:
            email = normalize_address(record.get("email") or "")
        except InvalidAddress as exc:
            result.problems.append(f"line {line}: {exc}")
            continue
        if email in seen:
            result.problems.append(f"line {line}: {email} appears twice; the first is kept")
            continue
        seen.add(email)
        consented = (record.get("consented_at") or "").strip()
        try:
            consented_at = _timestamp(consented) if consented else None
        except ValueError:
            result.problems.append(f"line {line}: consented_at {consented!r} is not a date and "
                                   "time such as 2024-03-01T09:30:00Z")
            continue
        yield Row(line=line, email=email, consented_at=consented_at,
                  source_url=(record.get("source_url") or "").strip()[:2048] or None,
                  consent_ip=(record.get("consent_ip") or "").strip()[:45] or None)


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _batches(rows: Iterable[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def import_rows(db: Database, rows: Iterable[Row], now: datetime, per_hour: int,
                      result: ImportResult, secret: str, regimen: str,
                      progress: Any = None) -> ImportResult:
    """Import in batches of BATCH rows, one transaction each, as subscriptions to `regimen`;
    `progress.update(n)` after each. An address already held, for any regimen or suppressed,
    is left untouched."""
    if per_hour < 1:
        raise ValueError("per_hour must be at least 1")
    spacing = timedelta(hours=1) / per_hour
    for batch in _batches(rows):
        async with db.transaction() as session:
            # Any address we hold is left alone, whatever its regimens: an old list is where
            # the people who stopped everything, bounced or complained are found.
            held = set(await session.scalars(
                select(Reader.email).where(Reader.email.in_([r.email for r in batch]))))
            for row in batch:
                if row.email in held:
                    result.already_held += 1
                    continue
                if await privacy.was_erased(session, secret, row.email):
                    result.erased += 1
                    continue
                session.add(Reader(email=row.email, created_at=now))
                await session.flush()
                if row.consented_at is not None:
                    await _add_confirmed(session, row, regimen, row.consented_at)
                    result.confirmed += 1
                else:
                    at = now + spacing * result.mailed
                    await _add_pending(session, row, regimen, at)
                    result.mailed += 1
                    result.last_mail_at = at
        if progress is not None:
            progress.update(len(batch))
    return result


async def _add_confirmed(session: AsyncSession, row: Row, regimen: str,
                         consented_at: datetime) -> None:
    # A reader who agreed on a past day joins that day's figures.
    stale_figures.note(session, regimen, consented_at)
    reader = Subscriber(email=row.email, regimen=regimen, status=SubscriberStatus.CONFIRMED,
                        created_at=consented_at, confirmed_at=consented_at)
    session.add(reader)
    await session.flush()
    session.add(Consent(subscriber_id=reader.id, signed_up_at=consented_at,
                        source_url=row.source_url, confirmed_at=consented_at,
                        confirm_ip=row.consent_ip))


async def _add_pending(session: AsyncSession, row: Row, regimen: str, send_at: datetime) -> None:
    reader = Subscriber(email=row.email, regimen=regimen, status=SubscriberStatus.PENDING,
                        created_at=send_at)
    session.add(reader)
    await queue_mail(session, reader, MailKind.CONFIRM)
    # Consent's signup time is when the mail goes, so the 24-hour reminder follows the mail.
    session.add(Consent(subscriber_id=reader.id, signed_up_at=send_at,
                        source_url=row.source_url, signup_ip=row.consent_ip))
    # Pace it: queue_mail queues for now; the outbox row waits for its turn instead. Its
    # created_at moves too, because the retry window is counted from it.
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == reader.id,
               OutboxMessage.status == OutboxStatus.QUEUED)
        .values(next_attempt_at=send_at, created_at=send_at)
        .execution_options(synchronize_session=False))


async def export_rows(db: Database) -> AsyncIterator[tuple[Any, ...]]:
    """Every subscription, streamed with a server-side cursor: memory stays flat however
    many."""
    latest = (select(Consent.id).where(Consent.subscriber_id == Subscriber.id)
              .order_by(Consent.id.desc()).limit(1).correlate(Subscriber).scalar_subquery())
    query = (
        select(Subscriber.email, Subscriber.regimen, Subscriber.status, Subscriber.created_at,
               Subscriber.confirmed_at, Subscriber.unsubscribed_at, Reader.suppressed_at,
               Consent.source_url, Consent.confirm_ip)
        .join(Reader, Reader.email == Subscriber.email)
        .outerjoin(Consent, Consent.id == latest)
        .order_by(Subscriber.id)
        .execution_options(yield_per=1000)
    )
    async with db.sessionmaker() as session:
        result = await session.stream(query)
        async for row in result:
            yield tuple(_cell(value) for value in row)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    return getattr(value, "value", value)
