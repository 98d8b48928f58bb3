"""SMS: an interface, with no vendor behind it yet.

China's SMS goes through vendor SDKs (Alibaba Cloud dysms, Tencent Cloud SMS) and
pre-approved text templates; none is integrated. A deployment registers its
gateway under a name (`register_gateway("aliyun", factory)`) before the worker
starts, and a channel `{type = "sms", gateway = "aliyun", phones = [...]}` uses it.
A directory naming a gateway that is not registered is refused at start.
"""
from __future__ import annotations

from typing import Callable, Protocol

from supplymon.notify.directory import Channel
from supplymon.notify.render import Message


class SmsGateway(Protocol):
    async def send(self, phones: list[str], text: str) -> None:
        """Send `text` to every phone; raise DeliveryError if the vendor refused."""


GATEWAYS: dict[str, Callable[[Channel], SmsGateway]] = {}


def register_gateway(name: str, factory: Callable[[Channel], SmsGateway]) -> None:
    GATEWAYS[name] = factory


def sms_text(message: Message) -> str:
    """SMS carries the title and the first alert's Chinese sentence (texts are short and templated by vendors)."""
    first = message.alerts[0].get("message_zh", "") if message.alerts else ""
    return f"{message.title} {first}".strip()


class Sms:
    def __init__(self, channel: Channel):
        self.gateway = GATEWAYS[channel.options["gateway"]](channel)
        self.phones = list(channel.options["phones"])

    async def send(self, message: Message) -> None:
        await self.gateway.send(self.phones, sms_text(message))
