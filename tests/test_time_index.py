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


def test_continuity_seeks_back_over_a_gap_until_the_missing_offset_comes():
    from streams.continuity import OffsetContinuity, Verdict as V
    c = OffsetContinuity()
    assert [c.check("p", o) for o in (5, 6, 7)] == [V.PROCESS] * 3  # starts wherever delivery starts
    assert c.check("p", 6) is V.SKIP  # delivered again: already processed
    assert c.check("p", 12) is V.SEEK and c.expected("p") == 8 and c.seeking_since("p") == 0
    c.sought("p")
    assert c.check("p", 13) is V.SEEK and c.seeking_since("p") == 1  # stale, from before the seek
    assert [c.check("p", o) for o in (8, 9, 10, 11, 12, 13)] == [V.PROCESS] * 6
    c.keep_only(["p"])  # kept across a rebalance: still checked
    assert c.check("p", 20) is V.SEEK
    c.keep_only([])  # revoked: a later assignment starts afresh
    assert c.expected("p") is None and c.check("p", 3) is V.PROCESS


def test_continuity_accepts_a_gap_the_log_really_has():
    from streams.continuity import MAX_SEEKS, OffsetContinuity, Verdict as V
    c = OffsetContinuity()
    c.check("p", 0)
    for attempt in range(MAX_SEEKS):
        assert c.check("p", 3) is V.SEEK  # offsets 1 and 2 are transaction markers, say
        assert c.accept_gap("p") is None
        c.sought("p")
    assert c.accept_gap("p") == 3
    assert c.check("p", 3) is V.PROCESS
