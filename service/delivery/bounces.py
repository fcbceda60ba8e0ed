"""Which SMTP refusals are hard bounces: judged by the RFC 3463 enhanced status code at the
start of the reply, wherever in the transaction it comes (RCPT, or after DATA).

A hard bounce suppresses the reader's address for good; a refusal that is ours to fix (our
login, sender, SPF, a relay or blocklist) only holds the mail until it is fixed; anything
else fails that one mail and keeps the address.
"""

from __future__ import annotations

import re

from service.delivery.outgoing import PermanentFailure, RecipientRejected, TemporaryFailure

# RFC 3463 enhanced status codes (class.subject.detail), as the reply text starts with them.
ENHANCED = re.compile(r"\s*[245]\.(\d{1,3})\.(\d{1,3})(?!\S)")
# The recipient's mailbox is gone or refuses mail: bad mailbox (5.1.1), bad system (5.1.2),
# bad address syntax (5.1.3), moved without forwarding (5.1.6), null MX (5.1.10, RFC 7505),
# mailbox disabled (5.2.1).
MAILBOX_GONE = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)}
# Ours to fix, whatever the reader's address: our sender address (5.1.7, 5.1.8), our login or
# its encryption (5.7.8, 5.7.9, 5.7.11, 5.7.13, 5.7.14), our SPF, reverse DNS, DKIM/DMARC or
# null MX (5.7.23-5.7.27).
OURS = {(1, 7), (1, 8), (7, 8), (7, 9), (7, 11), (7, 13), (7, 14),
        (7, 23), (7, 24), (7, 25), (7, 26), (7, 27)}
# 5.7.1 at RCPT is usually the recipient's policy, but also how Postfix words a relay that will
# not relay for us and a client IP on a blocklist: suppressing the reader's address for those
# would stop mailing every reader. Read the text for them.
ABOUT_US = re.compile(r"relay|blocked using|block ?list|black ?list|client host|spamhaus",
                      re.IGNORECASE)


def refusal(code: int, text: str, *, at_rcpt: bool) -> type[Exception]:
    """Which failure a 4xx/5xx reply to RCPT (`at_rcpt`) or to the message (after DATA) is."""
    if code < 500:
        return TemporaryFailure
    enhanced = ENHANCED.match(text)
    if enhanced is None:
        if ABOUT_US.search(text):
            return TemporaryFailure
        # RFC 5321's basic codes: only RCPT's 550/551/553 say the mailbox is unavailable.
        return RecipientRejected if at_rcpt and code in (550, 551, 553) else PermanentFailure
    status = (int(enhanced[1]), int(enhanced[2]))
    # A mailbox that is gone says so in its code, whatever the words around it ("User unknown
    # in relay recipient table"): the words are read only where the code is ambiguous.
    if status in MAILBOX_GONE:
        return RecipientRejected
    if at_rcpt and status == (7, 1):
        return TemporaryFailure if ABOUT_US.search(text) else RecipientRejected
    if status in OURS:
        return TemporaryFailure
    # The message (5.6.x, 5.3.4 too big, 5.7.1 after DATA: content or spam policy), a full
    # mailbox (5.2.2), routing (5.4.x): this mail fails, the address stays.
    return PermanentFailure
