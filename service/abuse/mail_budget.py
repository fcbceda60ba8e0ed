"""Per-address limits on the mail that signups cause: a stranger's address typed in again and
again gets at most one mail per 5 minutes and three a day (REGIMEN_MAILS_PER_ADDRESS).

The limit never shows in the answer (which would tell whether the address is known): only the
mail is withheld. It is counted on the outbox, which already holds every mail queued to the
address: exact across any number of processes without Redis, one query for a whole batch of
signups, and no memory that grows with the number of addresses seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse_many
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.bulk import among
from service.core.models import MailKind, OutboxMessage, Subscriber


@dataclass(frozen=True)
class MailWindow:
    """At most `most` mails to one address within `within`."""

    most: int
    within: timedelta


def mail_windows(spec: str) -> list[MailWindow]:
    """REGIMEN_MAILS_PER_ADDRESS ("1/5minutes;3/day") as windows."""
    return [MailWindow(item.amount, timedelta(seconds=item.get_expiry()))
            for item in parse_many(spec)]


class MailBudget:
    """What the per-address windows still allow each of some addresses, from the outbox: every
    mail a signup caused counts, whichever of its regimens it is for. Lessons do not: the
    reader agreed to them, they come on the author's schedule, and a lesson this morning must
    not hold back the confirmation of a regimen asked for this afternoon."""

    def __init__(self, windows: Sequence[MailWindow], now: datetime,
                 queued: dict[str, list[datetime]]) -> None:
        self._windows = windows
        self._now = now
        self._queued = queued

    @classmethod
    def load(cls, session: Session, emails: set[str], windows: Sequence[MailWindow],
             now: datetime) -> MailBudget:
        queued: dict[str, list[datetime]] = {}
        if windows and emails:
            since = now - max(window.within for window in windows)
            rows = session.execute(
                select(Subscriber.email, OutboxMessage.created_at)
                .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
                .where(among(session, Subscriber.email, emails),
                       OutboxMessage.created_at > since,
                       OutboxMessage.kind != MailKind.LESSON))
            for email, created_at in rows:
                queued.setdefault(email, []).append(created_at)
        return cls(windows, now, queued)

    def spend(self, email: str) -> bool:
        """Whether one more mail to this address fits; if it does, count it."""
        queued = self._queued.setdefault(email, [])
        for window in self._windows:
            if sum(1 for at in queued if at > self._now - window.within) >= window.most:
                return False
        queued.append(self._now)
        return True
