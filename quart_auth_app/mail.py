"""Outgoing mail: SMTP through aiosmtplib when MAIL_URL is set, the application log otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from .config import Settings

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class Mail:
    """One message to one recipient, already rendered."""

    to: str
    subject: str
    text: str
    html: str | None = None


class Mailer(Protocol):
    """Something that delivers a Mail or raises."""

    async def send(self, mail: Mail) -> None: ...


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to reach the SMTP server, parsed from MAIL_URL."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_mail_url(url: str) -> SmtpTarget:
    """smtp:// (plain), smtp+starttls:// (STARTTLS required), smtps:// (TLS from the start)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("expected smtp://, smtp+starttls:// or smtps:// with a host")
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[scheme],
        implicit_tls=scheme == "smtps",
        starttls=scheme == "smtp+starttls",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def compose(mail: Mail, sender: str) -> EmailMessage:
    """The MIME message: plain text, with an HTML alternative when there is one."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain=_sender_domain(sender))
    message.set_content(mail.text, cte=_transfer_encoding(mail.text))
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html", cte=_transfer_encoding(mail.html))
    return message


def _transfer_encoding(body: str) -> str:
    # Never quoted-printable: it would break the link across lines and turn "=" into "=3D".
    return "7bit" if body.isascii() else "8bit"


def _sender_domain(sender: str) -> str:
    address = sender.rpartition("<")[2].rstrip(">").strip()
    return address.rpartition("@")[2] or "localhost"


class SmtpMailer:
    """Delivers each mail over its own SMTP connection, bounded by a timeout."""

    def __init__(
        self, target: SmtpTarget, sender: str, timeout: float, ca_file: Path | None = None
    ) -> None:
        self.target = target
        self.sender = sender
        self.timeout = timeout
        self.ca_file = str(ca_file) if ca_file else None

    async def send(self, mail: Mail) -> None:
        """Hand the mail to the server; raises aiosmtplib.SMTPException or OSError on failure."""
        target = self.target
        await aiosmtplib.send(
            compose(mail, self.sender),
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.implicit_tls,
            # smtp:// means plain: no opportunistic upgrade that could fail on a bad certificate.
            start_tls=target.starttls,
            timeout=self.timeout,
            cert_bundle=self.ca_file,
        )


class LogMailer:
    """Development mode: the whole mail, link included, goes to the log so it can be followed."""

    def __init__(self) -> None:
        # Unconfigured logging drops INFO: a mail nobody sees helps nobody.
        if log.level == logging.NOTSET and log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)

    async def send(self, mail: Mail) -> None:
        """Write the mail to the log at INFO."""
        if not log.hasHandlers():  # decided now, once whoever configures logging has done so
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s"))
            log.addHandler(handler)
        log.info(
            "MAIL_URL is not set; this mail was not sent:\nTo: %s\nSubject: %s\n\n%s",
            mail.to,
            mail.subject,
            mail.text,
        )


def build_mailer(settings: Settings) -> Mailer:
    """The mailer the settings ask for."""
    if settings.mail_url is None:
        return LogMailer()
    target = parse_mail_url(settings.mail_url)
    return SmtpMailer(target, settings.mail_from, settings.mail_timeout, settings.mail_ca_file)
