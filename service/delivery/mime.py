"""Writing a multipart/alternative message straight to bytes.

The standard library's `email` package builds and serialises a message through a policy
machinery that costs milliseconds per mail: more than sending it. Our mails always have the
same simple shape (a few headers, a text part and an HTML part), so they are written here
directly, and the tests read them back with the `email` package to prove they parse.

Header values are ASCII (non-ASCII text as RFC 2047 encoded words), except an address whose
local part is not ASCII, which only exists in UTF-8 (RFC 6532) and is only ever sent with
SMTPUTF8 (see service.delivery.smtp).

A mail's parts are the same for every reader but for their links: each part is encoded once,
with a slot where each link goes (`PartTemplate`), and per mail only the lines holding a slot
are filled in and encoded.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.utils import formataddr

CRLF = "\r\n"
# RFC 5322 2.1.1: a line SHOULD be at most 78 characters (octets, RFC 6532), CRLF excluded.
MAX_LINE = 78


def header_value(value: str, name: str = "Subject") -> str:
    """ASCII as is; anything else with its non-ASCII words as RFC 2047 encoded words.

    The `email` package's own folding does this well (encoded words of at most 75 characters,
    ASCII words left readable); it is slow, so this is for values made once, not per mail.
    """
    if value.isascii():
        return value
    folded: str = policy.SMTP.fold(name, value)
    return folded.removeprefix(f"{name}: ").removesuffix(CRLF).replace(CRLF + " ", " ")


def mailbox(display_name: str, address: str) -> str:
    """`Display Name <address>`, the name quoted or encoded as it needs."""
    return header_value(formataddr((display_name, address)), "From")


def header_line(name: str, value: str) -> str:
    """`name: value` and CRLF, folded at spaces so that no line passes 78 octets where it can.

    A word longer than a line (an unsubscribe link) is never split: receivers differ on
    whether a link in a List-Unsubscribe header may hold white space, so it overflows its line
    instead, within RFC 5322's hard limit of 998. Nor is a header folded right after its colon:
    parsers (Python's among them) then keep the fold's space at the start of the value.
    """
    line = f"{name}: {value}"
    # Most lines are short and ASCII: one length check, no splitting.
    if len(line) <= MAX_LINE and "\n" not in value and (line.isascii()
                                                         or len(line.encode()) <= MAX_LINE):
        return line + CRLF
    first, *words = value.replace(CRLF + " ", " ").split(" ")
    lines: list[str] = []
    current = f"{name}: {first}"
    for word in words:
        if not word:  # a second space in a row: kept, never folded at (no blank lines)
            current += " "
        elif _octets(current) + 1 + _octets(word) <= MAX_LINE:
            current += " " + word
        else:
            lines.append(current)
            current = " " + word
    lines.append(current)
    return CRLF.join(lines) + CRLF


@dataclass(frozen=True)
class PartTemplate:
    """A text/`subtype` part's body, quoted-printable, with named slots filled per mail.

    Quoted-printable encodes each line on its own (RFC 2045 6.7: a soft line break never
    crosses a line's end), so the lines without a slot are encoded once, and filling in the
    rest gives, byte for byte, the encoding of the whole filled-in text. In a lesson mail 10
    lines hold a link (2 in a confirmation); encoding both parts whole for every mail was a
    third of composing it."""

    subtype: str
    # Runs of lines encoded already, and each line holding a slot as a format string whose
    # fields are the slots' names.
    pieces: tuple[bytes | str, ...]

    @classmethod
    def of(cls, subtype: str, content: str, slots: Mapping[str, str]) -> PartTemplate:
        """`content` with each of `slots`' values (a text no encoding or wrapping changes)
        standing for the slot named by its key."""
        names = {value: name for name, value in slots.items()}
        finder = re.compile("|".join(re.escape(value) for value in names)) if names else None
        pieces: list[bytes | str] = []
        static: list[str] = []
        for line in content.splitlines() or [""]:
            if finder is None or not finder.search(line):
                static.append(line + CRLF)
                continue
            if static:
                pieces.append(_quoted_printable("".join(static)))
                static = []
            literal = line.replace("{", "{{").replace("}", "}}")
            pieces.append(finder.sub(lambda found: "{" + names[found.group()] + "}", literal)
                          + CRLF)
        if static:
            pieces.append(_quoted_printable("".join(static)))
        return cls(subtype, tuple(pieces))

    def fill(self, values: Mapping[str, str]) -> bytes:
        """The part's body with each slot's value."""
        return b"".join(piece if isinstance(piece, bytes)
                        else _quoted_printable(piece.format_map(values))
                        for piece in self.pieces)


def multipart_alternative(headers: list[tuple[str, str]], parts: Sequence[PartTemplate],
                          values: Mapping[str, str], boundary: str) -> bytes:
    """`headers` must already be header-safe (see `header_value`, `mailbox`); `parts` are
    written in order, each with its slots filled from `values`; `boundary` must not start
    with characters that quoted-printable output can contain (use a leading "=_")."""
    head = "".join(header_line(name, value) for name, value in headers)
    head += header_line("MIME-Version", "1.0")
    head += header_line("Content-Type", f'multipart/alternative; boundary="{boundary}"') + CRLF
    body = b"".join(
        (f"--{boundary}{CRLF}"
         f"Content-Type: text/{part.subtype}; charset=utf-8{CRLF}"
         f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}").encode() + part.fill(values)
        for part in parts)
    return head.encode() + body + f"--{boundary}--{CRLF}".encode()


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _quoted_printable(lines: str) -> bytes:
    return binascii.b2a_qp(lines.encode("utf-8"), istext=True)
