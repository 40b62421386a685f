"""DueQueue (collector/metrics/due.py): keys come due when their time passes, until set again."""

from __future__ import annotations

from impactwatch.collector.metrics.due import DueQueue


def test_keys_come_due_in_time_and_stay_due_until_set_again() -> None:
    q = DueQueue()
    q.set("a", 10.0)
    q.set("b", 20.0)
    q.set("c", None)
    assert set(q.due(5.0)) == set()
    assert set(q.due(10.0)) == {"a"}
    assert set(q.due(15.0)) == {"a"}  # still due: nothing moved it
    q.set("a", 30.0)  # e.g. the product was updated
    assert set(q.due(25.0)) == {"b"}
    q.set("b", None)
    assert set(q.due(100.0)) == {"a"}
    q.set("a", 30.0)  # set again to the same time, already passed: due again
    assert set(q.due(100.0)) == {"a"}


def test_an_earlier_time_replaces_a_later_one_and_the_heap_stays_bounded() -> None:
    q = DueQueue()
    for i in range(10_000):
        q.set("k", 1_000_000.0 - i)  # moved again and again
    assert len(q._heap) <= 2 * len(q) + 64
    assert set(q.due(1_000_000.0 - 10_000)) == set()
    assert set(q.due(1_000_000.0 - 9_999)) == {"k"}
    q.clear()
    assert set(q.due(2_000_000.0)) == set() and len(q) == 0
