"""The notifier agent end to end: `supplymon replay --embedded` (real embedded broker,
chdb, worker process) with a recipients directory pointing at a loopback receiver
in this process (the demo's, which checks the webhook signatures)."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

from supplymon.notify.local_receiver import LocalReceiver
from supplymon.settings import SHANGHAI
from supplymon.simulate import REGIONS, World, generate, write_history
from tests.conftest import sql_rows, supplymon

SEED = 3


def test_replay_notifies_only_with_notify_and_a_rerun_sends_nothing_twice(tmp_path, data_dir):
    history = tmp_path / "history.jsonl"
    write_history(history, generate(days=4, orders_per_day=150, seed=SEED))
    receiver = LocalReceiver().start()
    try:
        world = World.build(random.Random(SEED))
        directory = receiver.write_directory(tmp_path / "recipients.toml",
                                             {d.id: d.regions for d in world.distributors}, list(REGIONS))
        env = {"SUPPLYMON_RECIPIENTS": str(directory)}
        args = ("replay", str(history), "--embedded", "--data-dir", str(data_dir))

        quiet = supplymon(*args, env=env)
        assert quiet.returncode == 0, quiet.stderr
        assert not receiver.received and "notifications:" not in quiet.stdout

        loud = supplymon(*args, "--notify", env=env)
        assert loud.returncode == 0, loud.stderr
        assert "notifications:" in loud.stdout
        got = {rid: list(messages) for rid, messages in receiver.received.items()}
        assert receiver.refused == 0

        again = supplymon(*args, "--notify", env=env)  # a restart: the same alerts come again
        assert again.returncode == 0, again.stderr
        assert {rid: list(m) for rid, m in receiver.received.items()} == got
    finally:
        receiver.stop()

    ids = Counter((rid, m["id"]) for rid, messages in got.items() for m in messages)
    assert ids and max(ids.values()) == 1  # each message once
    # every order-level alert state reached its distributor, once
    alerts = sql_rows(data_dir, "SELECT alert_id, distributor_id, resolved_at IS NOT NULL AS resolved "
                                "FROM supplymon.alerts FINAL WHERE subject_type IN ('order', 'institution')")
    assert alerts
    expected = {(a["distributor_id"], f"{a['alert_id']}:raised") for a in alerts} | {
        (a["distributor_id"], f"{a['alert_id']}:resolved") for a in alerts if a["resolved"]}
    assert {key for key in ids if not key[1].startswith("daily:")} >= expected
    log = sql_rows(data_dir, "SELECT status, count() AS n FROM supplymon.notifications FINAL GROUP BY status")
    assert {r["status"] for r in log} == {"sent"}
    # the delayed-response lists: at 09:00 of each day, to each distributor with an order overdue then
    overdue = sql_rows(data_dir, "SELECT distributor_id, toUnixTimestamp64Milli(raised_at) AS raised, "
                                 "toUnixTimestamp64Milli(resolved_at) AS resolved FROM supplymon.alerts FINAL "
                                 "WHERE kind = 'response_overdue'")
    # the 09:00s stream time passed: the history runs from 2026-03-01 00:00 to its last tick at 03-05 00:00
    nine = [datetime(2026, 3, day, 9, tzinfo=SHANGHAI) for day in range(1, 5)]
    expected_lists = {(a["distributor_id"], f"daily:{t:%Y-%m-%d}:{a['distributor_id']}") for t in nine
                      for a in overdue if a["raised"] <= t.timestamp() * 1000 < (a["resolved"] or 1 << 62)}
    lists = {(rid, m["id"]): m for rid, messages in got.items() for m in messages if m["type"] == "daily_distributor"}
    assert expected_lists and set(lists) == expected_lists
    assert all(m["title"].startswith("延迟响应清单") and "- 订单 / order" in m["markdown"] for m in lists.values())
