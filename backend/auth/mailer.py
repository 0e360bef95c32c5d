"""Outgoing email: SMTP in production, a folder of .eml files in development.

Confirmation codes and invitation tokens leave the service only by email, so both go
through one mailer, chosen at start from the settings::

    from backend.auth.mailer import mailer
    mailer().send("ada@example.com", "Confirm your email", "Your code is 123456.")

With ``SMTP_HOST`` set, ``SmtpMailer`` sends through that server (implicit TLS on port
465, otherwise STARTTLS when offered; it never logs in without TLS). Without it,
``FolderMailer`` writes each message to ``MAIL_DIR`` (``.mail/``) and logs the file's
path, so ``make run`` shows where to read it. Production refuses to start without SMTP.
A message that cannot be sent raises ``MailUnavailable`` (503): the caller's transaction
rolls back, so nothing is half-done (an invitation whose email never left, for example).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

from backend.config import Settings
from backend.errors import ApiError

EXTENSION = "velro.mailer"
DEVELOPMENT_SENDER = "Velro <no-reply@localhost>"
SMTP_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


class MailUnavailable(ApiError):
    code, error = 503, "mail_unavailable"
    description = "The email could not be sent right now; nothing was changed. Try again later."


class Mailer(Protocol):
    def send(self, to: str, subject: str, text: str) -> None: ...


def one_line(value: str) -> str:
    """A header value on one line: names users chose (a team's) may hold line breaks, which
    a header refuses (and which would let them add headers of their own)."""
    return " ".join(value.split())


def compose(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = one_line(subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].rstrip(">"))
    message.set_content(text)
    return message


class SmtpMailer:
    """Sends through an SMTP server, one connection per message."""

    def __init__(self, host: str, port: int, user: str | None, password: str | None, sender: str):
        self._host, self._port = host, port
        self._user, self._password = user, password
        self._sender = sender

    def send(self, to: str, subject: str, text: str) -> None:
        message = compose(self._sender, to, subject, text)
        try:
            with self._connect() as smtp:
                if self._user:
                    smtp.login(self._user, self._password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            # the address is the user's; the error names the server's refusal, not secrets
            log.error("mail to %s via %s:%s failed: %s", to, self._host, self._port, error)
            raise MailUnavailable() from error

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self._port == 465:
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        smtp = smtplib.SMTP(self._host, self._port, timeout=SMTP_TIMEOUT_SECONDS)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        elif self._user:
            smtp.close()
            raise smtplib.SMTPException("the server offers no STARTTLS: refusing to log in")
        return smtp


class FolderMailer:
    """The development catch-all: every message is an .eml file in one folder."""

    def __init__(self, directory: str | Path, sender: str = DEVELOPMENT_SENDER):
        self.directory = Path(directory)
        self._sender = sender
        if not log.hasHandlers():
            # until the app configures logging, the catch-all still says where mail went
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)

    def send(self, to: str, subject: str, text: str) -> Path:
        message = compose(self._sender, to, subject, text)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(message.as_bytes())
        except OSError as error:
            log.error("could not write mail to %s: %s", self.directory, error)
            raise MailUnavailable() from error
        log.info("mail to %s (%s) written to %s", to, subject, path.resolve())
        return path


def from_settings(settings: Settings) -> Mailer:
    if settings.SMTP_HOST:
        return SmtpMailer(
            settings.SMTP_HOST,
            settings.SMTP_PORT,
            settings.SMTP_USER,
            settings.SMTP_PASSWORD,
            settings.SMTP_SENDER,
        )
    return FolderMailer(settings.MAIL_DIR, settings.SMTP_SENDER or DEVELOPMENT_SENDER)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = from_settings(app.config["SETTINGS"])


def mailer() -> Mailer:
    return current_app.extensions[EXTENSION]
