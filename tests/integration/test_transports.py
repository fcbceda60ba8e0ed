"""Mail transports against a real SMTP server (aiosmtpd) in this process, with real TLS
certificates from a throwaway CA (trustme)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from service.delivery.outgoing import (
    Outgoing,
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
    can_deliver,
)
from service.delivery.smtp import SmtpTransport
from service.delivery.transports import ConsoleTransport, FileTransport, transport_from_url

StartServer = Callable[..., int]


def mail() -> Outgoing:
    message = EmailMessage()
    message["From"] = "Lawrence Gold <regimen@regimen.test>"
    message["To"] = "reader@example.org"
    message["Subject"] = "Please confirm"
    message["Message-ID"] = "<20240501.k3y@regimen.test>"
    message.set_content("Confirm here: https://regimen.test/confirm/abc\n")
    message.add_alternative("<p>Confirm <a href='https://regimen.test/confirm/abc'>here</a></p>",
                            subtype="html")
    return Outgoing(data=message.as_bytes(policy=policy.SMTP),
                    sender="regimen@regimen.test", recipient="reader@example.org")


async def send(url: str, data_dir: Path, *mails: Outgoing) -> None:
    """Send through a fresh transport and close it, as the worker does when it stops."""
    transport = transport_from_url(url, data_dir)
    try:
        for outgoing in mails or (mail(),):
            await transport.send(outgoing)
    finally:
        await transport.close()


class Sink:
    """Keeps what arrives; `refuse` maps an SMTP command to the answer that refuses it."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.received: list[dict[str, Any]] = []
        self.logins: list[LoginPassword] = []
        self.mail_options: list[list[str]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        envelope.mail_from = address
        self.mail_options.append(options)
        return self.refuse.get("MAIL", "250 OK")

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return self.refuse.get("RCPT", "250 OK")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if "DATA" in self.refuse:
            return self.refuse["DATA"]
        self.received.append({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "message": message_from_bytes(envelope.content, policy=policy.default),
            "tls": server.transport.get_extra_info("cipher") is not None,
            "authenticated": session.authenticated,
        })
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     login: LoginPassword) -> AuthResult:
        self.logins.append(login)
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=login.password == b"p@ss word:1", handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Session(SMTP):
    def __init__(self, ended: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended = ended

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._ended()


class _Controller(Controller):
    """Stops once every session is over. aiosmtpd's stop() abandons the socket of a session
    still open, and its ResourceWarning then fails whichever later test the GC runs in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = 0
        self._changed = threading.Condition()

    sessions_started = 0

    def factory(self) -> SMTP:
        with self._changed:
            self._open += 1
            _Controller.sessions_started += 1
        return _Session(self._ended, self.handler, **self.SMTP_kwargs)

    def _ended(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def stop(self, no_assert: bool = False) -> None:
        with self._changed:
            closed = self._changed.wait_for(lambda: self._open == 0, timeout=10)
        super().stop(no_assert)
        assert closed, "the client left its SMTP connection open"


@pytest.fixture
def start_smtp() -> Iterator[StartServer]:
    """Starts aiosmtpd servers on 127.0.0.1 and stops every one of them after the test."""
    controllers: list[Controller] = []

    def start(handler: Sink, **options: Any) -> int:
        controller = _Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return int(controller.port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def trust_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport uses the system's default trust store, as in production; point it at ours."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


async def test_smtp_delivers(start_smtp: StartServer, tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink)
    await send(f"smtp://127.0.0.1:{port}", tmp_path)
    [received] = sink.received
    assert received["from"] == "regimen@regimen.test"
    assert received["to"] == ["reader@example.org"]
    assert received["message"]["Message-ID"] == "<20240501.k3y@regimen.test>"
    assert received["message"]["Subject"] == "Please confirm"
    assert received["tls"] is False
    assert sink.logins == []


@pytest.mark.usefixtures("trust_ca")
async def test_smtp_upgrades_with_starttls_when_offered(start_smtp: StartServer, tmp_path: Path,
                                                        server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    port = start_smtp(sink, tls_context=server_tls, require_starttls=True)
    await send(f"smtp://127.0.0.1:{port}", tmp_path)
    assert [received["tls"] for received in sink.received] == [True]


async def test_an_untrusted_certificate_is_a_temporary_failure(
        start_smtp: StartServer, tmp_path: Path, server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    port = start_smtp(sink, tls_context=server_tls)
    # No falling back to plain text when the certificate does not verify.
    with pytest.raises(TemporaryFailure, match="certificate"):
        await send(f"smtp://127.0.0.1:{port}", tmp_path)
    assert sink.received == []


@pytest.mark.usefixtures("trust_ca")
async def test_smtps_speaks_tls_from_the_first_byte(start_smtp: StartServer, tmp_path: Path,
                                                    server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    port = start_smtp(sink, ssl_context=server_tls, server_hostname="127.0.0.1")
    await send(f"smtps://127.0.0.1:{port}", tmp_path)
    assert [received["tls"] for received in sink.received] == [True]


async def test_smtp_logs_in_with_the_credentials_of_the_url(start_smtp: StartServer,
                                                            tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink, authenticator=sink.authenticate, auth_require_tls=False)
    url = f"smtp://relay%40regimen.test:p%40ss%20word%3A1@127.0.0.1:{port}"
    await send(url, tmp_path)
    assert sink.logins == [LoginPassword(b"relay@regimen.test", b"p@ss word:1")]
    assert [received["authenticated"] for received in sink.received] == [True]


async def test_one_smtp_session_carries_many_mails(
        start_smtp: StartServer, tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink)
    sessions_before = _Controller.sessions_started
    await send(f"smtp://127.0.0.1:{port}", tmp_path, mail(), mail(), mail())
    assert len(sink.received) == 3
    assert _Controller.sessions_started - sessions_before == 1


async def test_a_session_the_server_dropped_is_reopened(
        start_smtp: StartServer, tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink)
    transport = transport_from_url(f"smtp://127.0.0.1:{port}", tmp_path)
    try:
        await transport.send(mail())
        # The relay closes the idle connection (as relays do after a while) ...
        assert isinstance(transport, SmtpTransport)
        for idle in transport._idle:
            idle.transport.close()  # type: ignore[union-attr]
        # ... and the next mail still goes, over a new session.
        await transport.send(mail())
    finally:
        await transport.close()
    assert len(sink.received) == 2


@pytest.mark.parametrize(("command", "answer", "failure"), [
    ("RCPT", "550 5.1.1 No such user", RecipientRejected),
    ("RCPT", "451 4.3.0 Try again later", TemporaryFailure),
    ("DATA", "554 5.6.0 Message refused", PermanentFailure),
    ("DATA", "452 4.3.1 Out of storage", TemporaryFailure),
    # A refused sender is our configuration, not the reader's address: retry, never bounce.
    ("MAIL", "553 5.7.1 Sender not owned by user", TemporaryFailure),
    # RFC 3463's enhanced code says whose the problem is, wherever in the transaction it comes:
    # many servers only look the mailbox up once they have the message.
    ("DATA", "550 5.1.1 No such user here", RecipientRejected),
    ("DATA", "550 5.2.1 Mailbox disabled, not accepting messages", RecipientRejected),
    ("RCPT", "550 5.1.10 Recipient address has null MX", RecipientRejected),
    ("RCPT", "554 5.7.1 Delivery not authorized for this recipient", RecipientRejected),
    # After DATA, 5.7.1 judges the message (content, spam policy), not the mailbox.
    ("DATA", "550 5.7.1 Message rejected as spam", PermanentFailure),
    # A full mailbox or an oversized message: this mail fails, the address stays.
    ("RCPT", "552 5.2.2 Mailbox full", PermanentFailure),
    ("DATA", "552 5.3.4 Message too big for system", PermanentFailure),
    # Our relay refusing to relay, our IP on a blocklist, our sender failing SPF/DMARC, our
    # sender address: our configuration or reputation, whatever the reader's address.
    ("RCPT", "554 5.7.1 <reader@example.org>: Relay access denied", TemporaryFailure),
    ("RCPT", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
             "zen.spamhaus.org", TemporaryFailure),
    ("DATA", "550 5.7.26 Unauthenticated email from regimen.test is not accepted due to "
             "domain's DMARC policy", TemporaryFailure),
    ("DATA", "553 5.1.8 Bad sender's system address", TemporaryFailure),
    # No enhanced code: RCPT's 550/551/553 name the mailbox, nothing else does.
    ("RCPT", "550 Requested action not taken: mailbox unavailable", RecipientRejected),
    ("RCPT", "554 Transaction failed", PermanentFailure),
    ("DATA", "550 Rejected", PermanentFailure),
])
async def test_refusals_are_permanent_only_for_the_reader_or_the_message(
        start_smtp: StartServer, tmp_path: Path, command: str, answer: str,
        failure: type[Exception]) -> None:
    port = start_smtp(Sink(refuse={command: answer}))
    with pytest.raises(failure, match=answer.split()[0]) as caught:
        await send(f"smtp://127.0.0.1:{port}", tmp_path)
    # Exactly this kind: a RecipientRejected is a PermanentFailure too, and suppresses the address.
    assert type(caught.value) is failure


UTF8_READER = "jörg@xn--exmple-cua.com"  # jörg@exämple.com, its domain as stored (IDNA)


def utf8_mail() -> Outgoing:
    """A mail to a non-ASCII local part, as service.delivery.messages writes it: the To header
    in UTF-8 (RFC 6532), everything else ASCII."""
    data = mail().data.replace(b"To: reader@example.org", f"To: {UTF8_READER}".encode())
    return Outgoing(data=data, sender="regimen@regimen.test", recipient=UTF8_READER)


async def test_a_non_ascii_local_part_goes_out_with_smtputf8(start_smtp: StartServer,
                                                            tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink, enable_SMTPUTF8=True)
    await send(f"smtp://127.0.0.1:{port}", tmp_path, mail(), utf8_mail())
    ascii_mail, utf8 = sink.received
    assert utf8["to"] == [UTF8_READER]
    assert str(utf8["message"]["To"]) == UTF8_READER
    # SMTPUTF8 only where it is needed: plain mail stays plain for every relay on the way.
    assert [("SMTPUTF8" in options) for options in sink.mail_options] == [False, True]
    assert ascii_mail["to"] == ["reader@example.org"]


async def test_a_non_ascii_local_part_without_smtputf8_fails_for_good_with_the_reason(
        start_smtp: StartServer, tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink, enable_SMTPUTF8=False)  # aiosmtpd's Controller offers it by default
    # Not a retry for three days (the server will not learn SMTPUTF8 meanwhile), and not a
    # bounce: the address is fine, our mail server cannot carry it.
    with pytest.raises(PermanentFailure, match="SMTPUTF8") as caught:
        await send(f"smtp://127.0.0.1:{port}", tmp_path, utf8_mail())
    assert type(caught.value) is PermanentFailure
    assert sink.received == []


@pytest.mark.parametrize("smtputf8", [True, False])
async def test_smtp_says_whether_it_takes_non_ascii_local_parts(
        start_smtp: StartServer, tmp_path: Path, smtputf8: bool) -> None:
    port = start_smtp(Sink(), enable_SMTPUTF8=smtputf8)
    transport = transport_from_url(f"smtp://127.0.0.1:{port}", tmp_path)
    sessions_before = _Controller.sessions_started
    try:
        assert await transport.delivers_utf8_local_parts() is smtputf8
        # Learned once from the server's EHLO, then known; and the probe's session is the one
        # the next mail goes out on.
        assert await transport.delivers_utf8_local_parts() is smtputf8
        await transport.send(mail())
    finally:
        await transport.close()
    assert _Controller.sessions_started - sessions_before == 1


async def test_smtp_that_cannot_be_asked_does_not_promise_non_ascii_local_parts(
        tmp_path: Path) -> None:
    transport = transport_from_url(f"smtp://127.0.0.1:{free_port()}", tmp_path)
    try:
        assert await transport.delivers_utf8_local_parts() is False
    finally:
        await transport.close()


async def test_console_and_file_take_any_address(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    outgoing = utf8_mail()
    for url in ("console:", f"file://{tmp_path / 'out'}"):
        transport = transport_from_url(url, tmp_path)
        assert await transport.delivers_utf8_local_parts() is True
        await send(url, tmp_path, outgoing)
    assert f"MAIL to {UTF8_READER}: Please confirm" in capsys.readouterr().out
    assert (tmp_path / "out" / "20240501.k3y.eml").read_bytes() == outgoing.data


@pytest.mark.parametrize(("address", "question_asked"), [
    ("reader@example.org", False),
    ("reader@xn--exmple-cua.com", False),  # an IDN domain travels as ASCII
    (UTF8_READER, True),
])
async def test_can_deliver_asks_the_transport_only_about_non_ascii_local_parts(
        address: str, question_asked: bool) -> None:
    class Refusing:
        asked = False

        async def send(self, outgoing: Outgoing) -> None: ...

        async def close(self) -> None: ...

        async def delivers_utf8_local_parts(self) -> bool:
            self.asked = True
            return False

    transport = Refusing()
    assert await can_deliver(transport, address) is not question_asked
    assert transport.asked is question_asked


async def test_a_wrong_password_is_a_temporary_failure(start_smtp: StartServer,
                                                       tmp_path: Path) -> None:
    sink = Sink()
    port = start_smtp(sink, authenticator=sink.authenticate, auth_require_tls=False)
    # Every queued mail would be marked failed for good if a bad password were permanent.
    with pytest.raises(TemporaryFailure, match="535"):
        await send(f"smtp://relay:wrong@127.0.0.1:{port}", tmp_path)
    assert sink.received == []


async def test_nothing_listening_is_a_temporary_failure(tmp_path: Path) -> None:
    with pytest.raises(TemporaryFailure):
        await send(f"smtp://127.0.0.1:{free_port()}", tmp_path)


async def test_file_writes_one_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    await send(f"file://{outbox}", tmp_path / "data")
    [written] = outbox.iterdir()
    assert written.name == "20240501.k3y.eml"
    assert message_from_bytes(written.read_bytes(), policy=policy.default)["Subject"] == \
        "Please confirm"


async def test_console_prints_the_text_and_keeps_a_copy(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    await send("console:", tmp_path)
    printed = capsys.readouterr().out
    assert "MAIL to reader@example.org: Please confirm" in printed
    assert "Confirm here: https://regimen.test/confirm/abc" in printed
    assert "<p>" not in printed
    assert "\r" not in printed  # a link copied from the terminal must work
    assert [path.name for path in (tmp_path / "mail").iterdir()] == ["20240501.k3y.eml"]


@pytest.mark.parametrize(("url", "kind", "port", "implicit_tls", "username", "password"), [
    ("smtp://mail.example.org", SmtpTransport, 587, False, None, None),
    ("smtps://u:p@mail.example.org", SmtpTransport, 465, True, "u", "p"),
    ("smtp://mail.example.org:2525", SmtpTransport, 2525, False, None, None),
])
def test_smtp_urls(tmp_path: Path, url: str, kind: type, port: int, implicit_tls: bool,
                   username: str | None, password: str | None) -> None:
    transport = transport_from_url(url, tmp_path)
    assert isinstance(transport, kind)
    assert (transport.host, transport.port, transport.implicit_tls, transport.username,
            transport.password) == ("mail.example.org", port, implicit_tls, username, password)


def test_console_and_file_urls(tmp_path: Path) -> None:
    console = transport_from_url("console:", tmp_path)
    assert isinstance(console, ConsoleTransport)
    assert console.copies.directory == tmp_path / "mail"
    files = transport_from_url("file:///srv/regimen%20mail", tmp_path)
    assert isinstance(files, FileTransport)
    assert files.directory == Path("/srv/regimen mail")


@pytest.mark.parametrize(("url", "reason"), [
    ("postcard://mail.example.org", "unknown mail transport 'postcard'"),
    ("mail.example.org:25", "unknown mail transport 'mail.example.org'"),
    ("smtp://", "needs a host"),
    ("file:", "needs a directory"),
])
def test_unusable_urls(tmp_path: Path, url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        transport_from_url(url, tmp_path)
