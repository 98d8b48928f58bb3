"""Routing by subject: which recipients and channels an alert state goes to.

- order-level alerts (subject order or institution+order) go to the order's distributor;
- `response_escalation`, `supply_shortage`, `demand_surge`, `low_delivery_rate`, and
  the market-conduct warnings (`distributor_limit_exceeded`, `price_*`,
  `remote_refusal`, `short_supply`) go to the supervisors of the alert's region or
  city (a distributor's alert has no region: to the supervisors of the regions the
  directory gives the distributor, and to those who list the distributor);
- a shortage also goes to the distributors its details name as able to cover it;
- observers (e.g. an operations team's Alertmanager) get every alert their filters want.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from supplymon.core.alerts import CONDUCT_KINDS
from supplymon.notify.directory import Channel, Directory, Recipient

# The kinds the issue names, and the market-conduct warnings (price and distribution
# conduct are the bureau's to act on, not the distributor's to fix alone).
SUPERVISED_KINDS = frozenset({"response_escalation", "supply_shortage", "demand_surge", "low_delivery_rate",
                              *CONDUCT_KINDS})
ORDER_SUBJECTS = frozenset({"order", "institution"})


@dataclass(frozen=True, order=True)
class DeliveryKey:
    """One row of `notifications`: exactly one delivery per alert state, recipient and channel."""

    alert_id: str
    state: str  # raised / resolved (a digest: raised)
    recipient: str
    channel: str


def alert_state(alert: Mapping) -> str:
    return "resolved" if alert.get("resolved_at") is not None else "raised"


def details_of(alert: Mapping) -> dict[str, Any]:
    details = alert.get("details") or {}
    return orjson.loads(details) if isinstance(details, (str, bytes)) else dict(details)


def recipients_for(alert: Mapping, directory: Directory) -> list[Recipient]:
    """Everyone the alert concerns, each once, in the directory's order."""
    kind, distributor = alert["kind"], alert.get("distributor_id") or ""
    wanted: set[str] = set()
    if alert.get("subject_type") in ORDER_SUBJECTS and distributor:
        wanted.add(distributor)
    if kind in SUPERVISED_KINDS:
        region = alert.get("region_code") or ""
        home = directory.by_id(distributor) if distributor else None
        regions = [region] if region else list(home.regions if home else ())
        for supervisor in directory.of_role("supervisor"):
            if distributor in supervisor.distributors or any(
                    supervisor.covers_region(r) for r in regions):
                wanted.add(supervisor.id)
    if kind == "supply_shortage":
        wanted.update(details_of(alert).get("could_cover") or ())
    return [r for r in directory.recipients if r.role == "observer" or r.id in wanted]


def route(alert: Mapping, directory: Directory) -> list[tuple[Recipient, Channel]]:
    """The immediate deliveries of this alert state (digest-mode channels get the
    alert in their daily digest instead)."""
    state = alert_state(alert)
    return [(recipient, channel) for recipient in recipients_for(alert, directory)
            for channel in recipient.channels
            if channel.mode == "immediate" and channel.wants(alert) and (state == "raised" or channel.resolved)]


def key_of(alert: Mapping, recipient: Recipient, channel: Channel) -> DeliveryKey:
    return DeliveryKey(alert["alert_id"], alert_state(alert), recipient.id, channel.label)
