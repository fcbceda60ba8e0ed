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

    async def delivers_utf8_local_parts(self) -> bool:
        """Whether mail to a non-ASCII local part (jörg@…) can leave through this transport:
        over SMTP only with the server's SMTPUTF8 (RFC 6531). Never raises; False when it cannot
        tell, since an address the form accepts must be one we can send to."""
        ...


def needs_smtputf8(address: str) -> bool:
    """A non-ASCII local part has no ASCII form (RFC 2047 is not allowed in an address); a
    domain always has one (IDNA), which is the form we send."""
    return not address.rpartition("@")[0].isascii()


async def can_deliver(transport: Transport, address: str) -> bool:
    """Whether mail to `address` (as normalised for storage) can go out through `transport`:
    what the signup form asks before accepting an address. Only a non-ASCII local part makes
    the transport answer, which for SMTP may mean one connection to the server, once."""
    return not needs_smtputf8(address) or await transport.delivers_utf8_local_parts()
