"""One string per order id, shared by the parts of a worker that hold it.

The order table (core/order_table.py) and the early warnings (core/early_warnings.py:
an order's two records, its manufacturer's and its distributor's) each keep every
open order's id; interned, they keep one string between them (~64 MB less per
million orders). Where interned strings are immortal (CPython 3.12.0-3.12.4 and the
free-threaded builds: python/cpython#113993), an evicted order's id would never be
freed: there each keeps its own copy instead.
"""
from __future__ import annotations

import sys
import sysconfig


def interned_strings_are_mortal(version: tuple[int, int, int] = sys.version_info[:3],
                                free_threaded: bool = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))) -> bool:
    return not free_threaded and not (3, 12, 0) <= version < (3, 12, 5)


def _own(order_id: str) -> str:
    return order_id


share = sys.intern if interned_strings_are_mortal() else _own
