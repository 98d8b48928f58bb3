"""Order ids shared between the order table and the early warnings (supplymon/core/ids.py)."""
from __future__ import annotations

from supplymon.core.ids import interned_strings_are_mortal, share


def test_ids_are_shared_only_where_interned_strings_can_be_freed():
    assert interned_strings_are_mortal((3, 11, 7), False) and interned_strings_are_mortal((3, 12, 5), False)
    assert interned_strings_are_mortal((3, 13, 0), False)
    assert not interned_strings_are_mortal((3, 12, 0), False) and not interned_strings_are_mortal((3, 12, 4), False)
    assert not interned_strings_are_mortal((3, 13, 1), True)
    a, b = "".join(["ORD-", "0001"]), "".join(["ORD-", "0001"])
    assert a is not b
    assert (share(a) is share(b)) == interned_strings_are_mortal()
