"""What the store's columns hold (schemas/clickhouse.sql), as bounds for validation.

An event whose values a column cannot hold is refused at intake (dead letter
`bad_field`) instead of failing its insert later: ClickHouse either refuses the
row (a quantity of 10^18 in a UInt32) or, for times, silently saturates it.
"""
from __future__ import annotations

from datetime import datetime, timezone

UINT16_MAX = 2**16 - 1  # order_facts.shipments, .arrivals
UINT32_MAX = 2**32 - 1  # order_facts.quantity, .confirmed_quantity, .delivered_quantity
# unit_price is a Float64: past 2^53 fen (~9e13 CNY) it no longer holds a price to
# the fen; no unit of a drug or consumable costs a fraction of that.
MAX_UNIT_PRICE = 1e13
# DateTime64(3) holds 1900-01-01 to 2299-12-31; times are taken up to 2200 so that
# every deadline derived from them (hours to days later) stays in range too.
MIN_TS_MS = int(datetime(1900, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
MAX_TS_MS = int(datetime(2200, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
MAX_ID = 128  # characters of an id (String columns hold more; ids are short codes)
