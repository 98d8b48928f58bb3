"""The state dump on SIGUSR1 (streams/diagnostics.py): from a real worker, and the
await chains it is made of."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from streams.diagnostics import BEGIN_MARK, END_MARK, await_chain
from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT
from tests.conftest import ROOT
from tests.state_dump import dump
from tests.test_end_to_end import Worker, _progress, _wait

INPUTS = {"supply.orders", "supply.responses", "supply.shipments", "supply.arrivals"}


def test_a_running_worker_dumps_its_tasks_and_batch_intake_on_sigusr1_and_goes_on(tmp_path):
    with EmbeddedBroker() as broker:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(tmp_path / "data"),
               "SUPPLYMON_WEB_PORT": str(port), "SUPPLYMON_LIVE_TICK_SECONDS": "0",
               "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
        worker = Worker(env, tmp_path / "worker.log")
        try:
            _wait(lambda: INPUTS <= {tp.rsplit(":", 1)[0] for tp in _progress(url)["assigned"]}, 180,
                  "the worker assigned the input partitions", worker)
            # Assigned, the worker may still be recovering its tables (the flow then
            # stopped): dumped again until it runs, as the state dump itself shows.
            deadline = time.monotonic() + 120
            while True:
                text = dump(worker)
                assert BEGIN_MARK in text and END_MARK in text, text[-3000:]
                if "in_recovery: False" in text or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            tasks = text[text.index("--- asyncio tasks"):text.index("--- batch intake and rebalance")]
            # the lifecycle agent's task, down to where it waits (its stream of batches)
            agent = next(block for block in tasks.split("\ntask ") if " in order_lifecycle" in block)
            assert "agents/lifecycle.py" in agent and "batches" in agent, agent
            # every thread, named: the main thread and Faust's consumer thread
            threads = text[text.index("--- threads"):text.index("--- asyncio tasks")]
            assert "thread MainThread" in threads, threads
            # faulthandler's stacks, written from the signal itself, before the loop's dump
            assert "Current thread" in text[:text.index(BEGIN_MARK)], text[:3000]
            intake = text[text.index("--- batch intake and rebalance"):]
            for line in ("taken_batches_not_acknowledged: []", "paused_partitions:", "held_back_by_intake:",
                         "faust_unacked_messages:", "flow_control_active: True", "in_recovery: False",
                         "--- order lifecycle agent ---", "aligner_held_records:"):
                assert line in intake, (line, intake)
            assert "supply.orders:0" in intake  # the assignment is listed
            # and where the Kafka client fetches each partition next
            positions = next(line for line in intake.splitlines() if line.startswith("fetch_positions: "))
            assert "'supply.orders:0': " in positions and "unknown" not in positions, positions
            # the worker goes on (the signal did not stop it) and answers
            worker.check()
            assert INPUTS <= {tp.rsplit(":", 1)[0] for tp in _progress(url)["assigned"]}
        finally:
            worker.stop()
    assert worker.process.returncode == 0, worker.log.read_text()[-3000:]


def test_an_await_chain_runs_from_the_task_down_to_the_future_it_waits_for():
    async def innermost(future):
        await future

    async def middle(future):
        await innermost(future)

    async def outer(future):
        await middle(future)

    async def main():
        future = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(outer(future))
        await asyncio.sleep(0)
        chain = list(await_chain(task.get_coro()))
        future.set_result(None)
        await task
        return chain

    chain = asyncio.run(main())
    assert [line.rsplit(" in ", 1)[1] for line in chain[:3]] == [
        "test_an_await_chain_runs_from_the_task_down_to_the_future_it_waits_for.<locals>.outer",
        "test_an_await_chain_runs_from_the_task_down_to_the_future_it_waits_for.<locals>.middle",
        "test_an_await_chain_runs_from_the_task_down_to_the_future_it_waits_for.<locals>.innermost"]
    assert all("test_state_dump.py:" in line for line in chain[:3])
    assert chain[3].startswith("awaiting <Future pending")


def test_sigusr1_while_a_worker_starts_gives_its_thread_stacks_and_does_not_end_it():
    """Before Faust runs (the embedded broker, the rebuild): faulthandler's stacks only,
    where the signal's default action would have ended the process."""
    code = ("import os, signal, time\n"
            "from streams.diagnostics import install_early\n"
            "install_early()\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"
            "time.sleep(0.2)\n"
            "print('still running')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "still running", result
    assert "Current thread" in result.stderr and "File \"<string>\", line 4" in result.stderr, result.stderr
