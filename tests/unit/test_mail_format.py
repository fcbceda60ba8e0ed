"""The small rules of writing and sending a mail, without a server: header folding, parts
encoded once and filled per mail, the words of the reminder, the Message-ID's domain, and what
an SMTP refusal means."""

from __future__ import annotations

import binascii
from datetime import timedelta
from email import message_from_string, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.delivery import mime
from service.delivery.bounces import refusal
from service.delivery.messages import is_public_domain, message_id_domain, time_ago
from service.delivery.outgoing import (
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
    needs_smtputf8,
)


def lines(header: str) -> list[str]:
    assert header.endswith("\r\n")
    return header.removesuffix("\r\n").split("\r\n")


def test_a_short_header_is_one_line() -> None:
    assert mime.header_line("To", "reader@example.org") == "To: reader@example.org\r\n"


def test_a_long_header_folds_at_spaces_and_unfolds_to_itself() -> None:
    value = "Your free regimen: " + " ".join(["Self-relief regimen for sacro-iliac pain"] * 4)
    folded = mime.header_line("Subject", value)
    assert all(len(line) <= 78 for line in lines(folded))
    assert all(line.startswith(" ") for line in lines(folded)[1:])
    message = message_from_string(folded + "\r\n", policy=policy.default)
    assert str(message["Subject"]) == value


def test_a_word_longer_than_a_line_is_not_split() -> None:
    link = "<https://regimen.example.org/unsubscribe/" + "x" * 90 + ">"
    # Nor moved to a line of its own: a fold right after the colon would leave a space at the
    # start of the value in many parsers, and the link would no longer match <...> exactly.
    assert lines(mime.header_line("List-Unsubscribe", link)) == [f"List-Unsubscribe: {link}"]
    assert lines(mime.header_line("X-Links", f"{link} {link}")) == [f"X-Links: {link}",
                                                                    f" {link}"]


def test_utf8_is_measured_in_octets_and_spaces_are_kept() -> None:
    value = " ".join(["jörg-über"] * 10) + "  " + " ".join(["müller"] * 5)
    folded = lines(mime.header_line("X-Test", value))
    assert all(len(line.encode()) <= 78 for line in folded)
    assert all(line.strip() for line in folded), "a folded header has no blank line"
    assert "".join(folded) == f"X-Test: {value}"


def test_non_ascii_text_becomes_short_encoded_words() -> None:
    subject = "Selbsthilfe-Übungen für das Iliosakralgelenk und den unteren Rücken, " * 2
    value = mime.header_value(subject.strip())
    assert value.isascii()
    assert all(len(word) <= 75 for word in value.split())
    message = message_from_string(mime.header_line("Subject", value) + "\r\n",
                                  policy=policy.default)
    assert str(message["Subject"]) == subject.strip()


@pytest.mark.parametrize("name", ["Lawrence Gold", "Gold, Lawrence", "Jörg Müller-Lüdenscheidt"])
def test_a_sender_name_round_trips(name: str) -> None:
    header = mime.header_line("From", mime.mailbox(name, "regimen@example.org"))
    assert header.isascii()
    [address] = message_from_string(header + "\r\n", policy=policy.default)["From"].addresses
    assert (address.display_name, address.addr_spec) == (name, "regimen@example.org")


SLOTS = {"link": "REGIMENLINKLINKREGIMENLINK", "other": "REGIMENLINKOTHERREGIMENLINK"}
# Lines as templates make them: long ones, dots and spaces where quoted-printable must encode
# them (a line's start and end), non-ASCII, an "=", braces (CSS), slots anywhere and more than
# one on a line.
LINE = st.lists(st.one_of(st.sampled_from([*SLOTS.values(), ".", " ", "\t", "=", "\u201c",
                                          "\xb7", "a" * 70, "<a href=\"", "{", "}", "{link}"]),
                          st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)),
                max_size=8).map("".join)


def quoted_printable(text: str) -> bytes:
    """What writing each mail whole would give: the filled-in text, one CRLF a line, encoded."""
    return binascii.b2a_qp(("\r\n".join(text.splitlines()) + "\r\n").encode(), istext=True)


@settings(max_examples=300)
@given(lines=st.lists(LINE, max_size=12), link=st.sampled_from([
    "https://regimen.test/r/WyJhYmNkZWYiLDFd.axcTxA.eKgvulOkqkHtbqffyx2VSN-m1G0",
    "https://regimen.test/erase/" + "x" * 120, ""]))
def test_a_part_filled_in_is_the_whole_text_encoded(lines: list[str], link: str) -> None:
    text = "\r\n".join(lines)
    part = mime.PartTemplate.of("plain", text, SLOTS)
    values = {"link": link, "other": "<" + link + ">"}
    filled = text.replace(SLOTS["link"], values["link"]).replace(SLOTS["other"], values["other"])
    assert part.fill(values) == quoted_printable(filled)


def test_a_part_encodes_its_lines_without_slots_once() -> None:
    part = mime.PartTemplate.of("html", "<p>\r\nfirst\r\nsee REGIMENLINKLINKREGIMENLINK.\r\n"
                                "last \u201cline\u201d \r\n", SLOTS)
    assert part.pieces[0] == b"<p>\r\nfirst\r\n"
    assert part.pieces[1] == "see {link}.\r\n"
    assert part.pieces[2] == b"last =E2=80=9Cline=E2=80=9D=20\r\n"
    assert part.fill({"link": "https://x.test/a"}) == (
        b"<p>\r\nfirst\r\nsee https://x.test/a.\r\nlast =E2=80=9Cline=E2=80=9D=20\r\n")


@pytest.mark.parametrize(("delta", "words"), [
    (timedelta(days=1), "a day ago"),
    (timedelta(days=3), "3 days ago"),
    (timedelta(hours=1), "an hour ago"),
    (timedelta(hours=30), "30 hours ago"),
    (timedelta(minutes=1), "a minute ago"),
    (timedelta(minutes=45), "45 minutes ago"),
    (timedelta(seconds=20), "a moment ago"),
])
def test_time_ago(delta: timedelta, words: str) -> None:
    assert time_ago(delta) == words


@pytest.mark.parametrize(("domain", "public"), [
    ("example.com", True), ("regimen.example.org", True), ("mail.lawrencegold.com", True),
    ("localhost", False), ("mailhost", False), ("regimen.test", False), ("box.local", False),
    ("lab.invalid", False), ("site.example", False), ("127.0.0.1", False),
    ("router.home.arpa", False), ("localhost.localdomain", False),
])
def test_public_domains(domain: str, public: bool) -> None:
    assert is_public_domain(domain) is public


def test_message_id_domain_falls_back_to_the_site() -> None:
    assert message_id_domain("localhost", "https://regimen.example.org/") == "regimen.example.org"
    assert message_id_domain("example.com", "https://regimen.example.org/") == "example.com"
    # Neither is public (a development setup): the sender's, as before.
    assert message_id_domain("localhost", "http://127.0.0.1:8000") == "localhost"


@pytest.mark.parametrize(("address", "needs"), [
    ("reader@example.org", False), ("reader@xn--exmple-cua.com", False),
    ("reader@exämple.com", False), ("jörg@example.org", True),
])
def test_only_a_non_ascii_local_part_needs_smtputf8(address: str, needs: bool) -> None:
    assert needs_smtputf8(address) is needs


@pytest.mark.parametrize(("code", "text", "at_rcpt", "failure"), [
    (550, "5.1.1 User unknown", False, RecipientRejected),
    (550, "5.1.2 Host unknown", True, RecipientRejected),
    (553, "5.1.3 Bad destination mailbox address syntax", True, RecipientRejected),
    (551, "5.1.6 Mailbox has moved", False, RecipientRejected),
    (550, "5.2.1 The email account that you tried to reach is disabled", False,
     RecipientRejected),
    (550, "5.7.1 Recipient refuses mail from this sender", True, RecipientRejected),
    (550, "5.7.1 Content refused", False, PermanentFailure),
    (550, "5.1.0 Address rejected", True, PermanentFailure),
    (552, "5.2.2 Over quota", False, PermanentFailure),
    (554, "5.6.0 Bad content", False, PermanentFailure),
    (550, "5.4.4 Unable to route", True, PermanentFailure),
    (535, "5.7.8 Authentication credentials invalid", False, TemporaryFailure),
    (550, "5.7.23 SPF validation failed", False, TemporaryFailure),
    (550, "5.7.1 Relaying denied", True, TemporaryFailure),
    (554, "5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
     True, TemporaryFailure),
    (550, "Relaying denied", True, TemporaryFailure),
    # Postfix's "no such user" behind a relay names the relay: the code says what it is.
    (550, "5.1.1 <x@example.org>: Recipient address rejected: User unknown in relay recipient "
          "table", True, RecipientRejected),
    (550, "5.2.1 mailbox disabled, blocklisted sender", False, RecipientRejected),
    (421, "4.7.0 Try again later", True, TemporaryFailure),
    (450, "4.2.1 Mailbox busy", False, TemporaryFailure),
    (550, "Mailbox unavailable", True, RecipientRejected),
    (550, "Mailbox unavailable", False, PermanentFailure),
    # A code only looks like an enhanced one when it is a word of its own at the start.
    (550, "5.1.1.2 not a status", False, PermanentFailure),
])
def test_refusals(code: int, text: str, at_rcpt: bool, failure: type[Exception]) -> None:
    assert refusal(code, text, at_rcpt=at_rcpt) is failure
