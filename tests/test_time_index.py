"""Stream time (watermark over partitions) and the due index."""
from supplymon.core.due import DueIndex
from supplymon.core.stream_time import StreamTime


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


def test_due_index_compacts_when_keys_are_unscheduled_in_bulk():
    """Orders held until their order event comes, then placed all at once: the entries
    they leave are dropped before their time comes, and what is still due is kept."""
    index = DueIndex()
    for n in range(10_000):
        index.schedule(f"o{n}", 1_000_000 + n)
    for n in range(10_000):
        if n % 100:
            index.schedule(f"o{n}", None)
    assert len(index._heap) < 2000
    assert index.next_due() == 1_000_000
    assert index.pop_due(10**9) == [f"o{n}" for n in range(0, 10_000, 100)]


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
    from streams.continuity import OffsetContinuity, Verdict as V
    c = OffsetContinuity()
    c.check("p", 0)
    assert c.check("p", 3) is V.SEEK  # offsets 1 and 2 are transaction markers, say
    c.sought("p")
    c.accept_gap("p", 3)  # the log, asked, has nothing before 3
    assert c.expected("p") == 3 and c.check("p", 3) is V.PROCESS


def test_continuity_plan_a_gap_filled_later_in_the_same_batch_is_not_sought():
    # A rebalance delivers stale prefetched messages, then the partition again from
    # its commit, in one batch (a worker crashed on exactly this).
    from streams.continuity import OffsetContinuity
    c = OffsetContinuity()
    c.plan([("p", 330)], ["p"])
    plan = c.plan([("p", 337), ("p", 338)] + [("p", o) for o in range(331, 340)], ["p"])
    assert plan.process == list(range(2, 11)) and plan.withheld == [0, 1]
    assert plan.seek_to == {} and c.expected("p") == 340


def test_continuity_plan_seeks_to_what_is_still_missing_after_a_partly_filled_gap():
    from streams.continuity import OffsetContinuity
    c = OffsetContinuity()
    c.plan([("p", 330), ("q", 7)], ["p", "q"])
    # 337 jumps ahead; 331..333 fill part of the gap; 337 itself was withheld: read from 334
    plan = c.plan([("p", 337), ("p", 331), ("p", 332), ("p", 333), ("q", 8), ("r", 1)], ["p", "q"])
    assert plan.process == [1, 2, 3, 4] and plan.withheld == [0, 5]
    assert plan.seek_to == {"p": 334}
    # a gap still open at the end of a batch: reported once, then sought each batch
    plan = c.plan([("p", 340)], ["p", "q"])
    assert plan.seek_to == {"p": 334} and plan.new_gaps == {"p": 334}
    plan = c.plan([("p", 341)], ["p", "q"])
    assert plan.seek_to == {"p": 334} and plan.new_gaps == {}


def test_continuity_plan_suspects_a_gap_after_max_seeks_and_never_passes_it_alone():
    # Stale messages queued before the seek can fill many batches: the count alone
    # passes over nothing; the log is asked (agents/sequence.py) and decides.
    from streams.continuity import MAX_SEEKS, OffsetContinuity
    c = OffsetContinuity()
    c.plan([("p", 0)], ["p"])
    for _ in range(MAX_SEEKS - 1):
        plan = c.plan([("p", 3)], ["p"])
        assert plan.seek_to == {"p": 1} and plan.suspected_gaps == {}
    plan = c.plan([("p", 3)], ["p"])
    assert plan.seek_to == {"p": 1} and plan.suspected_gaps == {"p": 1}
    c.keep_seeking("p")  # the log has offset 1: go on seeking, counted afresh
    plan = c.plan([("p", 3)], ["p"])
    assert plan.suspected_gaps == {} and plan.process == []
    assert c.plan([("p", 1), ("p", 2), ("p", 3)], ["p"]).process == [0, 1, 2]


def test_continuity_a_partition_started_at_its_commit_takes_a_later_first_message_as_a_gap():
    # Unstarted, whatever comes first begins the sequence: a batch fetched past the
    # commit (the first one dropped in a rebalance) would be processed and committed
    # past what precedes it. Started at the commit, it is a gap, read again.
    from streams.continuity import OffsetContinuity
    c = OffsetContinuity()
    assert c.plan([("p", 500)], ["p"]).process == [0]  # why the batch intake starts partitions
    c.forget()
    c.start("p", 0)
    plan = c.plan([("p", 500), ("p", 501)], ["p"])
    assert plan.process == [] and plan.seek_to == {"p": 0} and plan.new_gaps == {"p": 0}
    plan = c.plan([("p", 0), ("p", 1)], ["p"])
    assert plan.process == [0, 1] and c.expected("p") == 2
    plan = c.plan([("p", 1), ("p", 2)], ["p"])  # read again (the record before the commit): skipped
    assert plan.process == [1] and plan.withheld == [0]
