"""Writing a multipart/alternative message straight to bytes.

The standard library's `email` package builds and serialises a message through a policy
machinery that costs milliseconds per mail: more than sending it. Our mails always have the
same simple shape (a few headers, a text part and an HTML part), so they are written here
directly, and the tests read them back with the `email` package to prove they parse.
"""

from __future__ import annotations

import binascii
from email.header import Header

CRLF = "\r\n"


def header_value(value: str) -> str:
    """ASCII as is; anything else as RFC 2047 encoded words."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep=CRLF)


def multipart_alternative(headers: list[tuple[str, str]], text: str, html: str,
                          boundary: str) -> bytes:
    """`headers` must already be header-safe (see `header_value`); `boundary` must not start
    with characters that quoted-printable output can contain (use a leading "=_")."""
    head = "".join(f"{name}: {value}{CRLF}" for name, value in headers)
    head += (f"MIME-Version: 1.0{CRLF}"
             f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}')
    body = b"".join(_part(subtype, content, boundary)
                    for subtype, content in (("plain", text), ("html", html)))
    return head.encode() + body + f"--{boundary}--{CRLF}".encode()


def _part(subtype: str, content: str, boundary: str) -> bytes:
    normalised = CRLF.join(content.splitlines()) + CRLF
    encoded = binascii.b2a_qp(normalised.encode("utf-8"), istext=True)
    return (f"--{boundary}{CRLF}"
            f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
            f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}").encode() + encoded
