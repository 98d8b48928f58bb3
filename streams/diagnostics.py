"""What a worker is doing, written out on demand (SIGUSR1): for a worker that
seems stuck (idle with a lag, a rebalance that does not end) without stopping it.

The dump, to stderr (the worker's log), between `BEGIN_MARK` and `END_MARK`:
1. every thread's Python stack (with the thread's name);
2. every asyncio task of the worker's loop: its name, and the chain of
   coroutines it is suspended in (each awaiting the next, down to the future it
   waits for), not only its outermost frame as `Task.print_stack` shows;
3. the batch intake (streams/batches.py) and Faust's rebalance state: the
   batches taken by the agent and not acknowledged (what a rebalance's
   `wait_empty` waits for), the partitions paused by the intake (`hold_back`)
   and by Faust, Faust's own unacknowledged messages, flow control, recovery
   (in recovery, per changelog partition the offset read and the highwater);
4. whatever the agents registered with `add_state` (records held back by the
   aligner, batches queued for the store, ...).

The dump is written from the event loop (a signal handler there). If the loop
itself is blocked (a synchronous call that never returns), that never runs: for
this case `install` also registers `faulthandler` on the same signal, which
writes every thread's stack from the signal itself, at once.
"""
from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator, TextIO

log = logging.getLogger(__name__)

DUMP_SIGNAL = signal.SIGUSR1
BEGIN_MARK = "=== supplymon state dump (SIGUSR1) ==="
END_MARK = "=== end of supplymon state dump ==="

_states: dict[str, Callable[[], Any]] = {}


def add_state(name: str, describe: Callable[[], Any]) -> None:
    """Have `describe()` (a dict, a list or a string) written in every dump under `name`."""
    _states[name] = describe


def await_chain(coro: Any, limit: int = 60) -> Iterator[str]:
    """`file:line in function` of each coroutine (or async generator, generator)
    from `coro` down the chain of what each awaits; last, what the innermost awaits
    (a future, a task), if anything."""
    for _ in range(limit):
        frame = _frame(coro)
        if frame is None:
            yield f"{_short(coro)} (finished or not started)"
            return
        yield f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_qualname}"
        inner = next((getattr(coro, name) for name in ("cr_await", "ag_await", "gi_yieldfrom")
                      if getattr(coro, name, None) is not None), None)
        inner = _unwrap(inner)
        if inner is None:
            return
        if _frame(inner) is None and not _is_generator(inner):
            yield f"awaiting {_short(inner)}"
            return
        coro = inner


def _frame(thing: Any) -> Any:
    for name in ("cr_frame", "ag_frame", "gi_frame"):
        frame = getattr(thing, name, None)
        if frame is not None:
            return frame
    return None


def _is_generator(thing: Any) -> bool:
    return any(hasattr(thing, name) for name in ("cr_code", "ag_code", "gi_code"))


def _unwrap(inner: Any) -> Any:
    """What an awaited helper object stands for: the coroutine behind a
    `coroutine_wrapper` (`await x` where `x.__await__` returns a coroutine's), the
    future behind a `FutureIter` (`await future`), the async generator behind an
    `asend` (`async for`). Those C objects expose it only to the garbage collector."""
    if inner is None or _is_generator(inner) or asyncio.isfuture(inner):
        return inner
    for referent in gc.get_referents(inner):
        if _is_generator(referent) or asyncio.isfuture(referent):
            return referent
    return inner


def _short(thing: Any, width: int = 300) -> str:
    try:
        text = repr(thing)
    except Exception as exc:  # a repr that fails must not end the dump
        text = f"<{type(thing).__name__}: repr failed: {exc!r}>"
    return text if len(text) <= width else text[:width] + "..."


def _threads(out: TextIO) -> None:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    out.write(f"--- threads ({len(frames)}) ---\n")
    for ident, frame in frames.items():
        out.write(f"thread {names.get(ident, '?')} ({ident}):\n")
        out.write("".join("  " + line for line in traceback.format_stack(frame)))


def _tasks(out: TextIO, loop: asyncio.AbstractEventLoop) -> None:
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    out.write(f"--- asyncio tasks ({len(tasks)}) ---\n")
    for task in tasks:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        state = "done" if task.done() else "pending"
        out.write(f"task {task.get_name()} {name} ({state}):\n")
        for line in await_chain(coro):
            out.write(f"  {line}\n")


def _intake(app: Any) -> dict:
    """The batch intake's and Faust's rebalance state (all read, nothing changed)."""
    consumer = getattr(app, "_consumer", None)  # not `app.consumer`: that would create one
    state: dict[str, Any] = {
        "generation": getattr(app, "consumer_generation_id", None),
        "rebalancing": getattr(app, "rebalancing", None),
        "in_recovery": getattr(app, "in_recovery", None),
        "flow_control_active": app.flow_control.is_active(),
    }
    if consumer is None:
        state["consumer"] = "not created"
        return state
    now = time.perf_counter()
    taken = list(getattr(consumer, "_taken", ()))
    state.update({
        "consumer_flow_active": consumer.flow_active,
        "suspend_flow_set": consumer.suspend_flow.is_set(),
        "taken_batches_not_acknowledged": [
            {"generation": batch.generation, "records": len(batch), "age_seconds": round(now - batch.fetched_at, 1),
             "partitions": sorted(_tp(tp) for tp in batch.by_partition)} for batch in taken],
        "faust_unacked_messages": len(consumer._unacked_messages),
        "assigned": sorted(_tp(tp) for tp in consumer.assignment()),
        "active_partitions": sorted(_tp(tp) for tp in consumer._active_partitions or ()),  # None: all assigned
        "paused_partitions": sorted(_tp(tp) for tp in consumer._paused_partitions),
        "buffered_partitions": sorted(_tp(tp) for tp in consumer._buffered_partitions),
        "held_back_by_intake": {_tp(tp): round(time.monotonic() - since, 1)
                                for tp, since in getattr(consumer, "_held_back", {}).items()},
        "hold_back_wanted": sorted(_tp(tp) for tp in getattr(consumer, "hold_back_wanted", ())),
        "held_back_generation": getattr(consumer, "_held_back_generation", None),
        "batch_acked": _by_tp(getattr(consumer, "_batch_acked", {})),
        "committed": _by_tp(consumer._committed_offset),
        "read": _by_tp({tp: offset for tp, offset in consumer._read_offset.items() if offset is not None}),
        "highwater": _by_tp({tp: consumer.highwater(tp) for tp in consumer.assignment()}),
        "fetch_positions": _fetch_positions(consumer),
    })
    channel = getattr(consumer, "batch_channel", None)
    if channel is not None:
        # put() goes to the queues of the channel's subscribers (the agent's stream)
        state["batches_queued_for_the_agent"] = sum(sub.queue.qsize() for sub in channel._subscribers)
    recovery = app.tables.recovery  # the tables are declared at import: already made
    if recovery is not None:
        queue = recovery.tables._changelog_queue  # (the property would make one)
        state["recovery"] = {
            "in_recovery": recovery.in_recovery,
            "completed": recovery.completed.is_set(),
            "signal_recovery_start": recovery.signal_recovery_start.is_set(),
            "signal_recovery_end": recovery.signal_recovery_end.is_set(),
            "active_offsets": _by_tp(recovery.active_offsets),
            "active_highwaters": _by_tp(recovery.active_highwaters),
            "changelog_events_queued": queue.qsize() if queue is not None else 0,
        }
    return state


def _fetch_positions(consumer: Any) -> dict:
    """Where the Kafka client fetches each assigned partition next (read from its
    thread's state: a diagnostic, not a synchronised read). A position at the
    highwater with nothing in `read` is records fetched and never delivered."""
    try:
        assignment = consumer._thread._ensure_consumer()._subscription.subscription.assignment
        return {_tp(tp): assignment.state_value(tp)._position for tp in sorted(assignment.tps, key=_tp)}
    except Exception as exc:  # not started, or the client's internals moved: the dump goes on
        return {"unknown": repr(exc)}


def _tp(tp: Any) -> str:
    return f"{tp.topic}:{tp.partition}"


def _by_tp(values: Any) -> dict[str, Any]:
    return {_tp(tp): value for tp, value in sorted(values.items(), key=lambda item: (item[0].topic, item[0].partition))}


def write_dump(app: Any, out: TextIO, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """The whole dump (see the module's doc) to `out`; a part that fails is reported,
    the others still written."""
    out.write(f"\n{BEGIN_MARK} pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    parts: list[tuple[str, Callable[[], None]]] = [("threads", lambda: _threads(out))]
    if loop is not None:
        parts.append(("tasks", lambda: _tasks(out, loop)))
    parts.append(("batch intake and rebalance", lambda: _write_state(out, "batch intake and rebalance", _intake(app))))
    for name, describe in list(_states.items()):
        parts.append((name, lambda name=name, describe=describe: _write_state(out, name, describe())))
    for name, write in parts:
        try:
            write()
        except Exception:
            out.write(f"--- {name}: could not be written ---\n{traceback.format_exc()}")
    out.write(f"{END_MARK}\n")
    out.flush()


def _write_state(out: TextIO, name: str, state: Any) -> None:
    out.write(f"--- {name} ---\n")
    if isinstance(state, dict):
        for key, value in state.items():
            out.write(f"{key}: {_short(value, 4000)}\n")
    else:
        out.write(f"{_short(state, 20000)}\n")


def install_early(out: TextIO | None = None) -> None:
    """Until `install`, while the worker starts (the embedded broker, the rebuild from
    the store, Faust's start): on `DUMP_SIGNAL`, every thread's stack (faulthandler),
    instead of the signal's default action, which ends the process."""
    try:
        faulthandler.register(DUMP_SIGNAL, file=out or sys.stderr, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError, RuntimeError) as exc:
        log.info("faulthandler not registered for the state dump: %r", exc)


def install(app: Any, loop: asyncio.AbstractEventLoop, out: TextIO | None = None) -> None:
    """On `DUMP_SIGNAL`: the dump, from `loop`, to `out` (stderr); and, at once from the
    signal itself, every thread's stack (`faulthandler`: also when the loop is blocked).
    Replaces mode's own SIGUSR1 handler (which prints every frame's local variables:
    here, the open orders' states)."""
    stream = out or sys.stderr

    def on_signal() -> None:
        try:
            write_dump(app, stream, loop)
        except Exception:  # never let a diagnostic take the worker down
            log.exception("the state dump failed")

    faulthandler.unregister(DUMP_SIGNAL)  # `install_early`'s, if any (else register would keep it)
    loop.add_signal_handler(DUMP_SIGNAL, on_signal)
    try:
        # After add_signal_handler: faulthandler calls the handler it replaces (chain),
        # which wakes the loop for `on_signal`.
        faulthandler.register(DUMP_SIGNAL, file=stream, all_threads=True, chain=True)
    except (AttributeError, ValueError, OSError, RuntimeError) as exc:  # no fileno (a test's captured stream)
        log.info("faulthandler not registered for the state dump: %r", exc)
