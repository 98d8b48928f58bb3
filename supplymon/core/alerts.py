"""Alert rows for the `alerts` table and topic: subject, stable id, a plain message.

Each message is one sentence in Chinese and in English that says what happened,
to whom, and since when, so a supervisor or the distributor can act on it.
"""
from __future__ import annotations

from datetime import datetime

from supplymon.core.lifecycle import alert_id
from supplymon.settings import SHANGHAI


def local_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _message(alert: dict, fact: dict) -> str:
    kind = alert["kind"]
    order, dist, inst = fact["order_id"], fact["distributor_id"], fact["institution_id"]
    since = local_time(alert["raised_at"])
    if kind == "response_overdue":
        return (f"订单 {order}（医疗机构 {inst}）已超过规定时限未获配送企业 {dist} 响应，{since} 起列入延迟响应清单。"
                f" / Order {order} from {inst} has had no answer from distributor {dist} "
                f"within the response deadline; on the delayed-response list since {since}.")
    if kind == "response_escalation":
        return (f"配送企业 {dist} 经督促后仍未响应订单 {order}（医疗机构 {inst}），{since} 起需上报处理。"
                f" / Distributor {dist} still has not answered order {order} from {inst} after being urged; "
                f"escalate (since {since}).")
    if kind == "delivery_overdue":
        return (f"订单 {order}（医疗机构 {inst}，{'主城区' if fact['area'] == 'urban' else '主城区外'}）"
                f"未在 {since} 前确认到货，配送企业 {dist}。"
                f" / Order {order} to {inst} ({fact['area']}) was not confirmed delivered by its deadline "
                f"{since}; distributor {dist}.")
    if kind == "confirmation_late":
        return (f"医疗机构 {alert['institution_id']} 在到货 {alert['hours']} 小时后才确认订单 {order} 的收货。"
                f" / Institution {alert['institution_id']} confirmed receipt of order {order} "
                f"{alert['hours']} h after the goods arrived.")
    raise ValueError(f"no message for alert kind {kind!r}")


RESOLVED = 1 << 40


def order_alert_row(alert: dict, fact: dict, version: int) -> dict:
    """An order-level alert as a row of the `alerts` table (times in epoch ms).

    `version` is the order's (it grows with every change); a resolved row also
    outranks every open one, whichever run or reading order wrote them."""
    kind = alert["kind"]
    subject_type = "institution" if kind == "confirmation_late" else "order"
    institution = alert.get("institution_id", fact["institution_id"])
    # Only what the order and the alert fix: a row must not depend on when it was emitted.
    details = {
        "ordered_at": local_time(fact["ordered_at"]),
        "area": fact["area"],
        "grassroots": fact["grassroots"],
        "quantity": fact["quantity"],
    }
    if alert["resolved_at"] is not None:
        details["overdue_hours"] = round((alert["resolved_at"] - alert["raised_at"]) / 3_600_000, 2)
    if "hours" in alert:
        details["confirmation_delay_hours"] = alert["hours"]
    return {
        "alert_id": alert_id(kind, fact["order_id"], institution if subject_type == "institution" else ""),
        "kind": kind,
        "severity": alert["severity"],
        "subject_type": subject_type,
        "order_id": fact["order_id"],
        "distributor_id": fact["distributor_id"],
        "institution_id": institution,
        "product_id": fact["product_id"],
        "region_code": fact["region_code"],
        "raised_at": alert["raised_at"],
        "resolved_at": alert["resolved_at"],
        "message": _message(alert, fact),
        "details": details,
        "version": version + (RESOLVED if alert["resolved_at"] is not None else 0),
    }
