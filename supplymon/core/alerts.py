"""Alert rows for the `alerts` table and topic: subject, stable id, a plain message.

Each message is one sentence in Chinese and in English that says what happened,
to whom, and since when, so a supervisor or the distributor can act on it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from supplymon.core.lifecycle import alert_id
from supplymon.settings import SHANGHAI


# Every alert kind of the contract (section 3) by its Chinese name, for people.
# Each alert kind's name for people (Chinese, English): one table for the demo, the
# dashboards' labels and the notifications.
KIND_NAMES = {
    "response_overdue": ("订单超时未响应", "response overdue"),
    "response_escalation": ("督促后仍未响应", "response escalation"),
    "delivery_overdue": ("配送超时", "delivery overdue"),
    "confirmation_late": ("到货确认延迟", "late confirmation"),
    "supply_shortage": ("供应短缺", "supply shortage"),
    "demand_surge": ("需求激增", "demand surge"),
    "low_delivery_rate": ("按时配送率偏低", "low on-time delivery rate"),
    "distributor_limit_exceeded": ("配送企业超限", "more distributors than allowed"),
    "price_linkage_overdue": ("价格未全国联动", "price linkage overdue"),
    "price_inconsistent": ("同城不同价", "price differs within the city"),
    "price_rise": ("价格上涨", "price rise"),
    "remote_refusal": ("拒绝偏远地区配送", "refuses remote areas"),
    "short_supply": ("不足额供货", "short supply"),
}


_DAY_MS, _MINUTE_MS = 86_400_000, 60_000
_OFFSET_MS = int(SHANGHAI.utcoffset(None).total_seconds() * 1000)  # a fixed offset: no rule of days to look up
_DATES: dict[int, str] = {}  # local day number -> "YYYY-MM-DD"


def local_time(ms: int) -> str:
    """`ms` (epoch) as the contract's local minute, "YYYY-MM-DD HH:MM". A batch writes
    tens of thousands (two a row of the alerts table): each day's date is formatted
    once, and the clock read from the milliseconds."""
    day, in_day = divmod(ms + _OFFSET_MS, _DAY_MS)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) > 100_000:  # ~270 years of days: bounded whatever the input
            _DATES.clear()
        date = _DATES[day] = (datetime(1970, 1, 1) + timedelta(days=day)).strftime("%Y-%m-%d")
    minutes = in_day // _MINUTE_MS
    return f"{date} {minutes // 60:02d}:{minutes % 60:02d}"


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


# What an order alert's row and message read of its order's fact row.
ALERT_FACT_FIELDS = ("order_id", "distributor_id", "institution_id", "product_id", "region_code", "area",
                     "grassroots", "quantity", "ordered_at")


def order_alert_row(alert: dict, fact: dict, version: int) -> dict:
    """An order-level alert as a row of the `alerts` table (times in epoch ms); of
    `fact` (its order's `order_facts` row) only ALERT_FACT_FIELDS are read.

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


WARNING_SEVERITY = {"supply_shortage": "critical", "demand_surge": "warning", "low_delivery_rate": "warning",
                    "distributor_limit_exceeded": "warning", "price_linkage_overdue": "warning",
                    "price_inconsistent": "info", "price_rise": "warning", "remote_refusal": "warning",
                    "short_supply": "warning"}
CONDUCT_KINDS = ("distributor_limit_exceeded", "price_linkage_overdue", "price_inconsistent", "price_rise",
                 "remote_refusal", "short_supply")
# An early warning's subject type, and the subject fields that name it (with the scope, in its id).
SUBJECT_TYPE = {"low_delivery_rate": "distributor", "remote_refusal": "distributor", "short_supply": "distributor",
                "distributor_limit_exceeded": "manufacturer_city", "price_inconsistent": "product_city"}
SUBJECT_IDS = {"distributor": ("distributor_id",), "product_region": ("product_id", "region_code"),
               "manufacturer_city": ("manufacturer_id", "region_code"), "product_city": ("product_id", "region_code")}


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.0f}%"


def _fine_percent(rate: float | None) -> str:
    """A percentage to a tenth (price differences around the 0.5 % tolerance)."""
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _warning_message(kind: str, subject: dict, details: dict, since: str) -> str:
    if kind == "supply_shortage":
        product, region, mfr = subject["product_id"], subject["region_code"], subject["manufacturer_id"]
        turned_away = len(details["institutions_out_of_stock"])
        dists = "、".join(details["distributors"]) or "—"
        cover = details.get("could_cover") or []
        cover_zh = f"可协调同一生产企业的其他配送企业 {'、'.join(cover)} 保障供应" if cover else "该生产企业暂无其他配送企业可协调"
        cover_en = (f"other distributors of {mfr} that could cover: {', '.join(cover)}" if cover
                    else f"no other distributor of {mfr} is known to cover")
        hours = _number(details["window_hours"])
        return (f"{since} 起产品 {product}（生产企业 {mfr}）在 {region} 供应短缺：近 {hours} 小时 {turned_away} 家医疗机构"
                f"因缺货被拒或部分响应，数量满足率 {_percent(details['fill_rate'])}（配送企业 {dists}）；{cover_zh}。"
                f" / Since {since} product {product} of {mfr} is short in region {region}: in {hours} h {turned_away} "
                f"institutions were turned away for out of stock, quantity fill rate {_percent(details['fill_rate'])} "
                f"(distributor {', '.join(details['distributors']) or '-'}); {cover_en}.")
    if kind == "demand_surge":
        product, region = subject["product_id"], subject["region_code"]
        mean = details["baseline_mean_daily_quantity"]
        ratio = f"{details['quantity_24h'] / mean:.1f}" if mean else "n/a"
        mean = "n/a" if mean is None else f"{mean:.1f}"  # details keep the precision; people read one decimal
        dists = ", ".join(details["distributors"]) or "-"
        hours = _number(details["window_hours"])
        return (f"{since} 起产品 {product} 在 {region} 需求激增：{hours} 小时内 {details['orders_24h']} 笔订单共 "
                f"{details['quantity_24h']} 件，为此前 {details['baseline_days']} 天日均 {mean} 件的 {ratio} 倍，"
                f"请督促配送企业 {dists} 备货。"
                f" / Since {since} demand for product {product} in region {region} has surged: "
                f"{details['orders_24h']} orders for {details['quantity_24h']} units in {hours} h, {ratio}x the "
                f"{details['baseline_days']}-day daily mean of {mean}; have distributor {dists} stock up.")
    if kind == "low_delivery_rate":
        dist, grassroots = subject["distributor_id"], details["scope"] == "grassroots"
        rate, floor, days = _percent(details["on_time_rate"]), _percent(details["threshold"]), _number(
            details["window_days"])
        return (f"配送企业 {dist} 截至 {since} 近 {days} 天{'对基层医疗机构的' if grassroots else ''}"
                f"按时配送率 {rate}（{details['on_time']}/{details['orders']} 单），低于 {floor}，需约谈整改。"
                f" / Distributor {dist} delivered {rate} of {'grassroots ' if grassroots else ''}orders on time "
                f"in the {days} days to {since} ({details['on_time']} of {details['orders']}), "
                f"below {floor}: call it in to rectify.")
    return _conduct_message(kind, subject, details, since)


def _price(value: float) -> str:
    return f"{value:.6g}"


def _conduct_message(kind: str, subject: dict, details: dict, since: str) -> str:
    """The market-conduct rules' messages (core/conduct.py)."""
    if kind == "distributor_limit_exceeded":
        mfr, city, dists = subject["manufacturer_id"], subject["region_code"], details["distributors"]
        days, most = _number(details["window_days"]), details["max_distributors"]
        return (f"{since} 起生产企业 {mfr} 在 {city} 市近 {days} 天有 {len(dists)} 家配送企业（{'、'.join(dists)}）"
                f"承接其产品订单，超过“一厂一区两配送”规定的 {most} 家，请核查其配送企业。"
                f" / Since {since} manufacturer {mfr} has had {len(dists)} distributors ({', '.join(dists)}) accept "
                f"orders for its products in city {city} within {days} days, more than the {most} allowed "
                f"(one manufacturer, two distributors per zone): check whom it named.")
    if kind in ("price_linkage_overdue", "price_inconsistent", "price_rise"):
        product, mfr = subject["product_id"], subject["manufacturer_id"]
        order = details["order"]
        lower = details.get("lower") or details["lowest"]
        price, low = _price(order["unit_price"]), _price(lower["unit_price"])
        where, low_where, low_when = order["region_code"], lower["region_code"], local_time(lower["ts"])
        if kind == "price_linkage_overdue":
            lag = _number(details["lag_days"])
            return (f"{since} 起产品 {product}（生产企业 {mfr}）在 {where} 仍以 {price} 元采购（订单 {order['order_id']}），"
                    f"而 {low_where} 于 {low_when} 已降至 {low} 元，超过 {lag} 天未联动调价，请督促同步调价。"
                    f" / Since {since} product {product} of {mfr} is still ordered in region {where} at CNY {price} "
                    f"(order {order['order_id']}) although region {low_where} had it at CNY {low} on {low_when}, "
                    f"more than {lag} days before: have the price cut linked here.")
        if kind == "price_inconsistent":
            city, pct = subject["region_code"], _fine_percent(details["difference"])
            return (f"{since} 起产品 {product}（生产企业 {mfr}）在 {city} 市同城不同价：{where} 订单 {order['order_id']} "
                    f"单价 {price} 元，比 {low_where} 于 {low_when} 的 {low} 元高 {pct}，请督促执行同城同价。"
                    f" / Since {since} product {product} of {mfr} has two prices in city {city}: order "
                    f"{order['order_id']} in {where} at CNY {price}, {pct} above CNY {low} in {low_where} on "
                    f"{low_when}: enforce one price per city.")
        days, pct = _number(details["window_days"]), _fine_percent(details["increase"])
        return (f"{since} 起产品 {product}（生产企业 {mfr}）在 {where} 涨价：订单 {order['order_id']} 单价 {price} 元，"
                f"比近 {days} 天最低价 {low} 元（{low_when}）高 {pct}，请核查是否恶意涨价。"
                f" / Since {since} product {product} of {mfr} costs more in region {where}: order {order['order_id']} "
                f"at CNY {price}, {pct} above the {days}-day lowest of CNY {low} ({low_when}): check for an "
                f"abusive price rise.")
    dist, days = subject["distributor_id"], _number(details["window_days"])
    if kind == "remote_refusal":
        rate, urban = _percent(details["rural_rejection_rate"]), _percent(details["urban_rejection_rate"])
        rural = f"{details['rural_rejected']}/{details['rural_orders']}"
        return (f"配送企业 {dist} 截至 {since} 近 {days} 天拒绝了 {rural} 笔主城区外订单（{rate}），主城区拒单率 {urban}，"
                f"涉嫌拒绝提供偏远地区配送，请督促限期整改。"
                f" / Distributor {dist} turned down {rural} orders outside the city area in the {days} days to "
                f"{since} ({rate}; in the city: {urban}): suspected refusal to serve remote institutions; order it "
                f"to rectify.")
    if kind == "short_supply":
        fill, below, orders = _percent(details["fill_rate"]), _percent(details["fill_rate_below"]), details[
            "accepted_orders"]
        return (f"配送企业 {dist} 截至 {since} 近 {days} 天接单 {orders} 笔，确认数量仅为订购数量的 {fill}（低于 {below}），"
                f"涉嫌不足额供货，请督促限期整改。"
                f" / Distributor {dist} confirmed only {fill} of the quantity ordered on the {orders} orders it "
                f"accepted in the {days} days to {since} (below {below}): suspected short supply; order it to "
                f"rectify.")
    raise ValueError(f"no message for alert kind {kind!r}")


def warning_alert_row(kind: str, subject: dict, raised_at: int, resolved_at: int | None,
                      details: dict, scope: str = "") -> dict:
    """An early warning (subject: product+region, product+city, manufacturer+city or
    distributor; a city's code is in `region_code`) as an `alerts` row.

    The id names the subject and the episode (its raise instant), so the same
    episode always has the same id; the resolved row outranks the open one."""
    subject_type = SUBJECT_TYPE.get(kind, "product_region")
    if kind in CONDUCT_KINDS and "manufacturer_id" in subject:  # the table has no column for it
        details = {"manufacturer_id": subject["manufacturer_id"], **details}
    ids = tuple(subject[name] for name in SUBJECT_IDS[subject_type]) + ((scope,) if subject_type == "distributor" else ())
    return {
        "alert_id": alert_id(kind, *ids, str(raised_at)),
        "kind": kind,
        "severity": WARNING_SEVERITY[kind],
        "subject_type": subject_type,
        "order_id": "",
        "distributor_id": subject.get("distributor_id", ""),
        "institution_id": "",
        "product_id": subject.get("product_id", ""),
        "region_code": subject.get("region_code", ""),
        "raised_at": raised_at,
        "resolved_at": resolved_at,
        "message": _warning_message(kind, subject, details, local_time(raised_at)),
        "details": details,
        "version": 1 + (RESOLVED if resolved_at is not None else 0),
    }
