"""Alert rows' local times (supplymon/core/alerts.py): the contract's minute in
Shanghai time, formatted a day at a time, as datetime formats it."""
from __future__ import annotations

from datetime import datetime

from hypothesis import given, strategies as st

from supplymon.core.alerts import local_time
from supplymon.settings import SHANGHAI

MS_1900, MS_2200 = -2_208_988_800_000, 7_258_118_400_000


def _by_datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, SHANGHAI).strftime("%Y-%m-%d %H:%M")


@given(st.integers(MS_1900, MS_2200))
def test_local_time_is_the_shanghai_minute_datetime_gives(ms):
    assert local_time(ms) == _by_datetime(ms)


def test_local_time_at_the_edges_of_a_local_day_and_minute():
    midnight = 1_772_294_400_000  # 2026-03-01 00:00 in Shanghai (16:00 UTC the day before)
    assert local_time(midnight) == "2026-03-01 00:00"
    assert local_time(midnight - 1) == "2026-02-28 23:59"
    assert local_time(midnight + 59_999) == "2026-03-01 00:00"
    assert local_time(midnight + 60_000) == "2026-03-01 00:01"
    assert local_time(-1) == "1970-01-01 07:59"
