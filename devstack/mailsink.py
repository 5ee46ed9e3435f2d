"""The local mail sink `make run` starts when no SMTP_URL is set: an SMTP server (aiosmtpd) on 127.0.0.1 that
delivers nothing and keeps every mail it is given as one file, `DATA_DIR/mail/<time>-<n>.eml` (open it with
any mail client, or read it: it is plain text), so the alert mails of a development stack can be read.

    python -m devstack.mailsink        # MAILSINK_HOST / MAILSINK_PORT (127.0.0.1:2525), DATA_DIR
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic_settings import SettingsConfigDict

from common.logging import setup_logging
from common.settings import DEFAULT_MAILSINK_PORT, CommonSettings

log = logging.getLogger(__name__)


class MailSinkSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="MAILSINK_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = DEFAULT_MAILSINK_PORT

    @property
    def mail_dir(self) -> Path:
        return mail_dir(self.data_dir)


def mail_dir(data_dir: Path) -> Path:
    """Where the sink of a stack whose DATA_DIR is `data_dir` keeps its mails."""
    return data_dir.resolve() / "mail"


class KeepEveryMail:
    """aiosmtpd handler: each message, as received, into its own .eml file (written whole, then renamed into
    place, so a reader never sees half a mail)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{os.getpid()}-{next(self._numbers)}.eml"
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(content)
        partial.replace(self.directory / name)
        headers = BytesHeaderParser().parsebytes(content)
        log.info("mail for %s kept in %s: %s", ", ".join(envelope.rcpt_tos), name, headers.get("Subject", ""))
        return "250 Message accepted for delivery"


async def serve(settings: MailSinkSettings) -> None:
    handler = KeepEveryMail(settings.mail_dir)
    loop = asyncio.get_running_loop()

    def protocol() -> Any:
        return SMTP(handler, hostname="fsg-mailsink", loop=loop)

    server = await loop.create_server(protocol, settings.host, settings.port)
    log.info("mail sink on smtp://%s:%d keeps every mail in %s", settings.host, settings.port, settings.mail_dir)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    settings = MailSinkSettings()
    setup_logging("mailsink", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
