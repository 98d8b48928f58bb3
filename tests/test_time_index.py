"""Stream time (watermark over partitions) and the due index."""
from supplymon.core.due import DueIndex
from streams.stream_time import StreamTime


def test_watermark_is_the_minimum_and_waits_for_every_partition():
    clock = StreamTime()
    clock.observe("a", 100)
    assert clock.watermark(["a", "b"]) is None
    clock.observe("b", 50)
    assert clock.watermark(["a", "b"]) == 50
    clock.observe("b", 40)  # late event: time does not go back
    assert clock.watermark(["a", "b"]) == 50
    clock.observe("b", 300)
    assert clock.watermark(["a", "b"]) == 100
    clock.forget(["b"])
    assert clock.watermark(["b"]) == 300 and "a" not in clock.latest


def test_due_index_pops_strictly_before_and_reschedules():
    index = DueIndex()
    index.schedule("x", 10)
    index.schedule("y", 20)
    index.schedule("x", 30)  # moved: the old entry must not fire
    assert index.pop_due(10) == []
    assert index.pop_due(21) == ["y"]
    assert index.pop_due(30) == []
    assert index.pop_due(31) == ["x"]
    index.schedule("z", 5)
    index.schedule("z", None)
    assert index.pop_due(100) == [] and len(index) == 0


def test_due_index_compacts_stale_entries():
    index = DueIndex()
    for due in range(10_000):
        index.schedule("k", due)
    assert len(index._heap) < 2000
    assert index.pop_due(10**9) == ["k"]


def test_continuity_processes_in_sequence_and_flags_gaps():
    from streams.continuity import OffsetContinuity, Verdict as V
    c = OffsetContinuity()
    assert [c.check("p", o) for o in (5, 6, 7)] == [V.PROCESS] * 3  # starts wherever delivery starts
    assert c.check("p", 6) is V.SKIP  # delivered again: already processed
    assert c.check("p", 12) is V.GAP and c.expected("p") == 8
    assert c.check("p", 8) is V.PROCESS
    c.keep_only(["p"])  # kept across a rebalance: still checked
    assert c.check("p", 20) is V.GAP
    c.keep_only([])  # revoked: a later assignment starts afresh
    assert c.expected("p") is None and c.check("p", 3) is V.PROCESS
