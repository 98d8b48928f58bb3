from supplymon import gcpolicy


def test_heap_left_over_by_the_last_batches_is_given_back_once(monkeypatch):
    """Batches of fewer than TRIM_EVERY events do not trim; the quiet-time trim gives
    back what they freed, once, and does nothing while no batch came since."""
    trims = []
    monkeypatch.setattr(gcpolicy, "_TRIM", lambda pad: trims.append(pad))
    monkeypatch.setattr(gcpolicy, "_since_trim", 0)
    gcpolicy.release_left_over_heap()
    assert trims == []
    gcpolicy.release_free_heap(gcpolicy.TRIM_EVERY - 1)
    assert trims == []
    gcpolicy.release_left_over_heap()
    assert trims == [0]
    gcpolicy.release_left_over_heap()
    assert trims == [0]
    gcpolicy.release_free_heap(gcpolicy.TRIM_EVERY - 1)  # counted from the last trim again
    assert trims == [0]
    gcpolicy.release_free_heap(1)
    assert trims == [0, 0]
