"""What a transport is given, and what it may raise; the worker decides from the failure's
kind whether to retry, give up, or stop mailing the address."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class RecipientRejected(PermanentFailure):
    """The receiving side says this address does not take mail: suppress it."""


@dataclass(frozen=True)
class Outgoing:
    """One mail ready to leave: the structured message for APIs that want fields, and the exact
    bytes (DKIM-signed when configured) for those that take the whole message."""

    message: EmailMessage
    data: bytes
    sender: str
    recipient: str


class Transport(Protocol):
    async def send(self, outgoing: Outgoing) -> None: ...

    async def close(self) -> None: ...
