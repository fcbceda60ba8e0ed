"""What a transport is given, and what it may raise; the worker decides from the failure's
kind whether to retry, give up, or stop mailing the address."""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import cached_property
from typing import Protocol


class TemporaryFailure(Exception):
    """Try again later: nothing about this message or address is wrong."""


class PermanentFailure(Exception):
    """This message will never go through as it is."""


class RecipientRejected(PermanentFailure):
    """The receiving side says this address does not take mail: suppress it."""


@dataclass(frozen=True)
class Outgoing:
    """One mail ready to leave: the exact bytes (DKIM-signed when configured) and the envelope.
    APIs that want the message's fields, and the console, read them from `message`."""

    data: bytes
    sender: str
    recipient: str

    @cached_property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Transport(Protocol):
    async def send(self, outgoing: Outgoing) -> None: ...

    async def close(self) -> None: ...
