"""Email addresses as readers type them, turned into the one form we store."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from service.texts import TEXTS

MAX_LENGTH = 254


class InvalidAddress(ValueError):
    """The message is written for the reader and shown next to the field."""


def normalize_address(raw: str) -> str:
    """Validate and normalise an address; raise InvalidAddress with a reader-facing reason.

    The whole address is lower-cased so that John@Example.org and john@example.org are one
    reader: no mailbox provider in practice treats the local part's case as significant.
    """
    typed = raw.strip()
    if not typed:
        raise InvalidAddress(TEXTS.address.empty)
    if any(ord(char) < 32 or ord(char) == 127 for char in typed):
        raise InvalidAddress(TEXTS.address.control)
    if len(typed) > MAX_LENGTH:
        raise InvalidAddress(TEXTS.address.too_long.format(limit=MAX_LENGTH))
    try:
        checked = validate_email(typed, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(TEXTS.address.invalid.format(reason=exc)) from None
    # The ASCII form (IDNA domain) where one exists: it is the one every mail server accepts,
    # and münchen.de and xn--mnchen-3ya.de become one reader.
    normalized = (checked.ascii_email or checked.normalized).lower()
    if len(normalized) > MAX_LENGTH:
        raise InvalidAddress(TEXTS.address.too_long.format(limit=MAX_LENGTH))
    return normalized


def mask(address: str) -> str:
    """Enough to tell addresses apart in a list or a log line, not enough to harvest them."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"

