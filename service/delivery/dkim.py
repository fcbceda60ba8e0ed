"""DKIM signatures on every mail, with dkimpy, when REGIMEN_DKIM_* is set."""

from __future__ import annotations

import dkim

from service.core.settings import Settings


class DkimSigner:
    """Signs the headers a receiver checks, including the unsubscribe headers, so that no one on
    the way can swap the link; and each once more than the message has it ("oversigning",
    RFC 6376 8.15): the signature then also says there is no other, so a second Subject, or a
    List-Unsubscribe added to a confirmation, breaks it instead of being shown as signed."""

    HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Unsubscribe",
               "List-Unsubscribe-Post", "MIME-Version", "Content-Type")

    def __init__(self, private_key: bytes, selector: str, domain: str) -> None:
        self.private_key = private_key
        self.selector = selector.encode()
        self.domain = domain.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        if not settings.dkim_private_key:
            return None
        return cls(settings.dkim_key_bytes(), settings.dkim_selector, settings.dkim_domain)

    def sign(self, data: bytes, present: list[str]) -> bytes:
        """`present`: the names of the headers in `data`, once per occurrence."""
        headers = [name.encode() for name in self.HEADERS
                   for _ in range(present.count(name) + 1)]
        signature: bytes = dkim.sign(data, self.selector, self.domain, self.private_key,
                                     include_headers=headers)
        return signature
