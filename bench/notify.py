"""Notification throughput (`python -m bench.notify`): the dispatcher sending N alert
states to a signed loopback webhook (one recipient per distributor) with the delivery
log in embedded ClickHouse (chdb), as the notifier agent does (batches of 500:
one log read, one `pending` insert, then a `sent` insert per delivery); then the
same alerts again (a replay or a restart: only log reads, nothing sent).
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from supplymon.notify.directory import parse_directory
from supplymon.notify.dispatcher import Dispatcher, StoreDeliveryLog
from supplymon.notify.local_receiver import LocalReceiver
from supplymon.notify.render import Renderer
from supplymon.settings import Settings
from supplymon.store import Store

T0 = 1_767_225_600_000


def alerts(n: int, distributors: int) -> list[dict]:
    return [{"alert_id": f"response_overdue-{i:012d}", "kind": "response_overdue", "severity": "warning",
             "subject_type": "order", "order_id": f"O{i}", "distributor_id": f"D{i % distributors}",
             "institution_id": "H1", "product_id": "P1", "region_code": "360702", "raised_at": T0 + i * 1000,
             "resolved_at": None, "message": f"订单 O{i} 未响应。 / Order O{i} has no answer.",
             "details": {"quantity": 5}} for i in range(n)]


async def run(n: int, distributors: int, store: Store, receiver: LocalReceiver) -> tuple[float, float]:
    executor = ThreadPoolExecutor(max_workers=1)

    async def on_store(fn):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, store)

    directory = parse_directory({"distributor": [
        {"id": f"D{d}", "channels": [{"type": "webhook", "url": f"{receiver.url}/to/D{d}", "secret": receiver.secret}]}
        for d in range(distributors)]}, env={})
    rows = alerts(n, distributors)
    timings = []
    for _ in range(2):
        dispatcher = Dispatcher(directory, StoreDeliveryLog(on_store), Renderer())
        started = time.perf_counter()
        for i in range(0, n, 500):
            await dispatcher.submit(rows[i:i + 500])
        await dispatcher.drain()
        timings.append(time.perf_counter() - started)
        await dispatcher.close()
    executor.shutdown()
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--distributors", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    receiver = LocalReceiver().start()
    store = Store(Settings(data_dir=tmp / "data"))
    store.migrate()
    try:
        first, again = asyncio.run(run(args.alerts, args.distributors, store, receiver))
    finally:
        store.close()
        receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    got = sum(len(m) for m in receiver.received.values())
    print(f"{args.alerts:,} alerts to {args.distributors} webhook recipients: {got:,} delivered in {first:.1f} s "
          f"({got / first:,.0f}/s, logged in chdb); the same alerts again: {again:.2f} s, nothing sent "
          f"({args.alerts / again:,.0f} alerts/s checked)")


if __name__ == "__main__":
    main()
