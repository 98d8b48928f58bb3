"""Daily digests, on event time.

At the directory's `digest_time` (Asia/Shanghai) of every day, as stream time
passes it: each distributor gets its delayed-response list (延迟响应清单: its
`response_overdue` orders still unanswered at that instant, with institution,
product, hours overdue, whether escalated, and any acknowledgement), each
supervisor (and observer) a summary of the alerts routed to them in the 24 h
before. Digest-mode channels also get the day's alerts listed.

Why event time: the list is what the rules say was overdue at that instant, so a
replay with `--notify` sends the same digests with the same content as the live
run did; in live operation the worker's wall-clock ticks move stream time, so the
digest goes out at that local time. A digest with nothing to say is not sent.

Pure: the shell queries the alerts as of the instant and passes the rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Callable, Iterable, Mapping

from supplymon.notify.directory import Channel, Directory, Recipient
from supplymon.notify.render import local_time
from supplymon.notify.routing import DeliveryKey, recipients_for
from supplymon.core.windows import DAY_MS
from supplymon.settings import HOUR_MS, SHANGHAI


def first_instant(from_ms: int, at: time) -> int:
    """The first digest instant at or after `from_ms`."""
    local = datetime.fromtimestamp(from_ms / 1000, SHANGHAI)
    candidate = datetime.combine(local.date(), at, SHANGHAI)
    if candidate < local:
        candidate += timedelta(days=1)
    return int(candidate.timestamp() * 1000)


def as_of(alert: Mapping, instant: int) -> dict:
    """The alert as it stood at `instant`: a resolution after it is not known yet."""
    out = dict(alert)
    if out.get("resolved_at") is not None and out["resolved_at"] > instant:
        out["resolved_at"] = None
    return out


@dataclass(frozen=True)
class Digest:
    key: DeliveryKey
    recipient: Recipient
    channel: Channel
    template: str
    context: dict
    alerts: list[dict]


def digest_id(instant: int) -> str:
    return f"daily:{datetime.fromtimestamp(instant / 1000, SHANGHAI):%Y-%m-%d}"


def daily_digests(directory: Directory, instant: int, open_response_alerts: Iterable[Mapping],
                  day_alerts: Iterable[Mapping], acks: Mapping[str, list[dict]], response_hours: float) -> list[Digest]:
    """Every digest due at `instant`. `open_response_alerts`: the `response_overdue` and
    `response_escalation` alerts open at `instant`; `day_alerts`: those raised in the
    24 h to it (as of it); `acks`: alert_id -> its acknowledgements."""
    escalated = {a["order_id"] for a in open_response_alerts if a["kind"] == "response_escalation"}
    overdue_by_distributor: dict[str, list[dict]] = {}
    for alert in sorted(open_response_alerts, key=lambda a: (a["raised_at"], a["order_id"])):
        if alert["kind"] != "response_overdue":
            continue
        details = alert.get("details") or {}
        ack = (acks.get(alert["alert_id"]) or [None])[-1]
        overdue_by_distributor.setdefault(alert["distributor_id"], []).append({
            "alert_id": alert["alert_id"], "order_id": alert["order_id"], "institution_id": alert["institution_id"],
            "product_id": alert["product_id"], "quantity": details.get("quantity", ""),
            "hours_overdue": round((instant - alert["raised_at"]) / HOUR_MS, 1),
            "escalated": alert["order_id"] in escalated, "ack": ack})
    routed: dict[str, list[dict]] = {}
    for alert in sorted(day_alerts, key=lambda a: (a["raised_at"], a["alert_id"])):
        alert = dict(alert, acks=acks.get(alert["alert_id"], []))
        for recipient in recipients_for(alert, directory):
            routed.setdefault(recipient.id, []).append(alert)
    day, key_id = f"{datetime.fromtimestamp(instant / 1000, SHANGHAI):%Y-%m-%d}", digest_id(instant)
    base = {"day": day, "as_of": local_time(instant), "since": local_time(instant - DAY_MS),
            "response_hours": f"{response_hours:g}"}
    out = []
    for recipient in directory.recipients:
        for channel in recipient.channels:
            if not channel.daily:
                continue
            listed = [a for a in routed.get(recipient.id, []) if channel.wants(a)]
            key = DeliveryKey(key_id, "raised", recipient.id, channel.label)
            context = dict(base, name=recipient.name)
            if recipient.role == "distributor":
                overdue = overdue_by_distributor.get(recipient.id, [])
                listed = listed if channel.mode == "digest" else []
                if overdue or listed:
                    out.append(Digest(key, recipient, channel, "daily_distributor", dict(context, overdue=overdue),
                                      listed))
            elif listed:
                counts = sorted({a["kind"] for a in listed})
                context["counts"] = [(kind, sum(a["kind"] == kind for a in listed)) for kind in counts]
                out.append(Digest(key, recipient, channel, "daily_supervisor", context, listed))
    return out


def split_to_fit(overdue: list, alerts: list, fits: Callable[[list, list, int], bool]) -> list[tuple[list, list]]:
    """A digest's rows (its overdue orders, then its alerts, in order) in as few parts
    as each fit one message: `fits(overdue, alerts, parts_upper_bound)` says whether a
    part with these rows fits. A robot cuts a longer message, and the rows past the
    cut (a distributor's overdue orders) would never be read. A row too long alone
    goes in a part of its own."""
    items = [("overdue", row) for row in overdue] + [("alerts", row) for row in alerts]
    bound = max(1, len(items))

    def unzip(part: list) -> tuple[list, list]:
        return [r for k, r in part if k == "overdue"], [r for k, r in part if k == "alerts"]

    parts: list[list] = []
    current: list = []
    for item in items:
        if current and not fits(*unzip(current + [item]), bound):
            parts.append(current)
            current = []
        current.append(item)
    parts.append(current)
    return [unzip(part) for part in parts]
