"""Email addresses as readers type them, turned into the one form we store."""

from __future__ import annotations

import enum
import re

import email_validator
from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Most readers type a plain address (letters, digits, single . _ + - between them; no hyphen
# pairs, so no Punycode) whose stored form is simply its lower case. email_validator takes 30 us
# to say so, a tenth of a signup's time (bench/signup.py); this says it in 1. Anything else
# goes to email_validator, and tests/unit/test_address_properties.py holds the two to one verdict.
PLAIN = re.compile(r"(?=[a-z0-9._+-]{1,64}@)[a-z0-9]+(?:[._+-][a-z0-9]+)*"
                   r"@(?:(?=[a-z0-9-]{1,63}\.)[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,63}")


class Problem(enum.Enum):
    """What is wrong with a typed address; the web's wording for each is in `service.web.texts`."""

    EMPTY = "empty"
    CONTROL = "contains line breaks or control characters"
    TOO_LONG = f"longer than any email address can be ({MAX_LENGTH} characters)"
    INVALID = "not an email address"


class InvalidAddress(ValueError):
    def __init__(self, problem: Problem, detail: str = "") -> None:
        # The plain message is for the author's command line (import, send-test).
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


def normalize_address(raw: str) -> str:
    """Validate and normalise an address; raise InvalidAddress with a reader-facing reason.

    The whole address is lower-cased so that John@Example.org and john@example.org are one
    reader: no mailbox provider in practice treats the local part's case as significant.
    """
    typed = raw.strip()
    if not typed:
        raise InvalidAddress(Problem.EMPTY)
    if CONTROL.search(typed):
        raise InvalidAddress(Problem.CONTROL)
    if len(typed) > MAX_LENGTH:
        raise InvalidAddress(Problem.TOO_LONG)
    return plain_address(typed) or validated_address(typed)


def plain_address(typed: str) -> str | None:
    """The stored form of a plain ASCII address, or None if it is not one."""
    if not typed.isascii():  # lower() could turn other letters into ASCII (K, the Kelvin sign)
        return None
    lowered = typed.lower()
    if len(lowered) > MAX_LENGTH or not PLAIN.fullmatch(lowered):
        return None
    domain = lowered.rpartition("@")[2]
    # Read on each call: email_validator documents the list as one its users may change.
    if any(domain == name or domain.endswith("." + name)
           for name in email_validator.SPECIAL_USE_DOMAIN_NAMES):
        return None
    return lowered


def validated_address(typed: str) -> str:
    """What email_validator makes of `typed` (already stripped and short enough)."""
    try:
        checked = validate_email(typed, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(Problem.INVALID, str(exc)) from None
    # The ASCII form (IDNA domain) where one exists: it is the one every mail server accepts,
    # and münchen.de and xn--mnchen-3ya.de become one reader. A local part beyond ASCII has no
    # such form (it goes out with SMTPUTF8), but its domain still does.
    normalized = (checked.ascii_email
                  or f"{checked.local_part}@{checked.ascii_domain}").lower()
    if len(normalized) > MAX_LENGTH:
        raise InvalidAddress(Problem.TOO_LONG)
    return normalized


def mask(address: str) -> str:
    """Enough to tell addresses apart in a list or a log line, not enough to harvest them."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"

