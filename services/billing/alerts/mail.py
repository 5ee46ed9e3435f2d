"""Alert mails: the SMTP server from SMTP_URL, and what a mail says.

Sending uses the standard library's smtplib in a worker thread (one short session per mail): nothing to add
to the dependencies, and a mail is a rare event. SMTP_URL's password is never logged or shown: `display`
masks it, and `SmtpConfig`'s repr leaves it out.
"""

from __future__ import annotations

import smtplib
import ssl
import textwrap
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from common.money import for_json
from services.billing.alerts.events import Alert, Kind

Security = Literal["plain", "starttls", "tls"]
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class InvalidSmtpUrl(ValueError):
    """SMTP_URL cannot be used; the message never quotes it (it may hold a password)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpConfig:
        """smtp://[user[:password]@]host[:port][?starttls=true] (port 25, or 587 with STARTTLS) or
        smtps://… (TLS from the first byte, port 465). User and password are percent-decoded."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidSmtpUrl("SMTP_URL is not a valid URL") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise InvalidSmtpUrl("SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
        options = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"starttls"}
        if unknown:
            raise InvalidSmtpUrl(f"SMTP_URL: unknown option(s) {', '.join(sorted(unknown))} (only starttls)")
        starttls = options.get("starttls", "false")
        if starttls not in _TRUE | _FALSE:
            raise InvalidSmtpUrl("SMTP_URL: starttls is true or false")
        if parts.scheme == "smtps":
            security: Security = "tls"
        else:
            security = "starttls" if starttls in _TRUE else "plain"
        default_port = {"tls": 465, "starttls": 587, "plain": 25}[security]
        return cls(host=parts.hostname, port=port or default_port, security=security,
                   username=unquote(parts.username or ""), password=unquote(parts.password or ""))

    @property
    def display(self) -> str:
        """The server as it may be printed: no password."""
        scheme = "smtps" if self.security == "tls" else "smtp"
        user = f"{self.username}:****@" if self.username else ""
        option = "?starttls=true" if self.security == "starttls" else ""
        return f"{scheme}://{user}{self.host}:{self.port}{option}"


def send(config: SmtpConfig, message: EmailMessage, timeout: float) -> None:
    """Deliver one mail (blocking: run it in a thread). Raises smtplib's or the socket's errors."""
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if config.security == "tls":
        client = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=timeout)
    with client:
        if config.security == "starttls":
            client.starttls(context=context)
        if config.username:
            client.login(config.username, config.password)
        client.send_message(message)


def _credits(amount: Decimal | None) -> str:
    return "?" if amount is None else str(for_json(amount))


def compose(alert: Alert, *, to: str, username: str, sender: str) -> EmailMessage:
    """The mail for one alert. Its Message-ID is the event's id, so a mail sent twice (at least once) is
    recognisably the same mail."""
    message = EmailMessage()
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(alert.created_at)
    message["Message-ID"] = f"<{alert.event_id}@{domain}>"
    message["X-FSG-Alert-Id"] = alert.event_id
    message["X-FSG-Alert-Type"] = alert.kind.event_type
    balance = _credits(alert.balance)
    if alert.kind is Kind.LOW_BALANCE:
        message["Subject"] = f"Your Film Script Generator credits are running low: {balance} left"
        text = (
            f"Hello {username},\n\n"
            f"Your balance is {balance} credits (1 credit = 1 US cent), below your alert threshold of "
            f"{_credits(alert.threshold)} credits.\n\n"
            "Metered calls are refused once a call needs more than you have. Ask your administrator for more "
            "credits.\n\n"
            "You are told once each time your balance drops below the threshold. Change the threshold, or add a "
            "webhook, with PUT /api/my-alerts.\n"
        )
    else:
        message["Subject"] = "A Film Script Generator call was refused: insufficient credits"
        text = (
            f"Hello {username},\n\n"
            f"A call to {alert.endpoint or 'a metered endpoint'} needed {_credits(alert.required)} credits, but "
            f"{_credits(alert.available)} were available, so it was refused (402 Insufficient credits). "
            f"Your balance is {balance} credits (1 credit = 1 US cent).\n\n"
            "Further refusals are not mailed until credits arrive. Ask your administrator for more credits.\n"
        )
    text += f"\nEvent {alert.event_id}, {alert.created_at.isoformat()}\n"
    # Plain text wrapped at 72 columns: no line needs quoted-printable, so the mail reads as it is in a file.
    message.set_content("\n\n".join(textwrap.fill(paragraph, 72) for paragraph in text.split("\n\n")) + "\n")
    return message
