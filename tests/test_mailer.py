"""The mailer: what SmtpMailer sends reaches a real SMTP server (aiosmtpd, in this process,
over loopback, with STARTTLS from a throwaway CA); the development catch-all writes .eml
files; a message that cannot leave is a 503 (MailUnavailable), never a silent loss."""

from __future__ import annotations

import email
import email.policy
import ssl

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from backend.auth.mailer import FolderMailer, MailUnavailable, SmtpMailer, from_settings
from backend.config import load_settings
from harness.servers import free_port

SENDER = "Velro <no-reply@velro.example>"


class Inbox:
    """An SMTP handler that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def plain_server():
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """STARTTLS required, AUTH only after it, one account; the process trusts the CA."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    logins = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret-smtp"
        logins.append((mechanism, auth_data.login))
        return AuthResult(success=ok, handled=False)  # the server answers 235 or 535

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield inbox, port, logins
    controller.stop()


def test_smtp_delivers_the_message(plain_server):
    inbox, port = plain_server
    SmtpMailer("127.0.0.1", port, None, None, SENDER).send(
        "ada@example.com", "Confirm your email address", "Your code is 123456."
    )
    (message,) = inbox.messages
    assert (message["From"], message["To"]) == (SENDER, "ada@example.com")
    assert message["Subject"] == "Confirm your email address"
    assert message["Message-ID"] and message["Date"]
    assert "Your code is 123456." in message.get_content()


def test_smtp_logs_in_only_over_starttls(tls_server):
    inbox, port, logins = tls_server
    SmtpMailer("127.0.0.1", port, "velro", "s3cret-smtp", SENDER).send(
        "ada@example.com", "Join Night Crew on Velro", "token"
    )
    assert [login for _mechanism, login in logins] == [b"velro"]
    assert [m["Subject"] for m in inbox.messages] == ["Join Night Crew on Velro"]


def test_a_refused_login_is_unavailable_and_sends_nothing(tls_server):
    inbox, port, _logins = tls_server
    mailer = SmtpMailer("127.0.0.1", port, "velro", "wrong", SENDER)
    with pytest.raises(MailUnavailable) as refused:
        mailer.send("ada@example.com", "subject", "text")
    assert refused.value.code == 503
    assert inbox.messages == []


def test_no_login_without_tls(plain_server):
    inbox, port = plain_server
    mailer = SmtpMailer("127.0.0.1", port, "velro", "s3cret-smtp", SENDER)
    with pytest.raises(MailUnavailable):
        mailer.send("ada@example.com", "subject", "text")
    assert inbox.messages == []


def test_an_unreachable_server_is_unavailable():
    mailer = SmtpMailer("127.0.0.1", free_port(), None, None, SENDER)
    with pytest.raises(MailUnavailable):
        mailer.send("ada@example.com", "subject", "text")


def test_the_folder_catch_all_writes_readable_eml_files(tmp_path):
    mailer = FolderMailer(tmp_path / "mail")
    path = mailer.send("ada@example.com", "Confirm your email address", "Your code is 654321.")
    assert path.parent == tmp_path / "mail" and path.suffix == ".eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert (message["To"], message["Subject"]) == ("ada@example.com", "Confirm your email address")
    assert "654321" in message.get_content()


def test_a_subject_with_line_breaks_is_sent_on_one_line(tmp_path):
    mailer = FolderMailer(tmp_path / "mail")
    path = mailer.send("ada@example.com", "Join Crew\r\nBcc: eve@example.com on Velro", "Hi.")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Join Crew Bcc: eve@example.com on Velro"
    assert message["Bcc"] is None


def test_the_settings_choose_the_mailer(tmp_path):
    base = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x", "APP_ENV": "development"}
    folder = from_settings(load_settings(environ={**base, "MAIL_DIR": str(tmp_path)}))
    assert isinstance(folder, FolderMailer) and folder.directory == tmp_path
    smtp = from_settings(
        load_settings(environ={**base, "SMTP_HOST": "smtp.example.com", "SMTP_SENDER": SENDER})
    )
    assert isinstance(smtp, SmtpMailer)
