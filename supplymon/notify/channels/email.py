"""E-mail over SMTP (aiosmtplib): a Chinese subject, a plain-text part (the
markdown) and an HTML part."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from supplymon.notify.channels import DeliveryError
from supplymon.notify.directory import Channel, Smtp
from supplymon.notify.render import Message


def email_message(message: Message, sender: str, to: list[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain="supplymon")
    mail["X-Supplymon-Id"] = message.id
    mail.set_content(message.markdown)
    mail.add_alternative(message.html, subtype="html")
    return mail


class Email:
    def __init__(self, channel: Channel, smtp: Smtp):
        self.to = list(channel.options["to"])
        self.smtp = smtp

    async def send(self, message: Message) -> None:
        mail = email_message(message, self.smtp.sender, self.to)
        try:
            await aiosmtplib.send(
                mail, hostname=self.smtp.host, port=self.smtp.port, username=self.smtp.username or None,
                password=self.smtp.password or None, use_tls=self.smtp.tls == "ssl",
                start_tls=True if self.smtp.tls == "starttls" else False, timeout=self.smtp.timeout_seconds)
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", retriable=exc.code >= 400 and exc.code < 500) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {exc}", retriable=True) from None
