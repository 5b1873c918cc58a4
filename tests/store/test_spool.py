"""The on-disk spool on its own: order, bound, restarts, torn lines."""

from __future__ import annotations

from pathlib import Path

from pbx_router.store.spool import Spool


def _drain(spool: Spool) -> list[int]:
    seen: list[int] = []
    while (batch := spool.take_oldest()) is not None:
        seen += [record["n"] for record in batch.records]
        spool.remove(batch.path)
    return seen


def test_records_come_back_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=500)  # 5 records per segment
    spool.append([{"n": n} for n in range(12)])
    spool.append([{"n": 12}])
    assert spool.pending == 13
    reopened = Spool(tmp_path, max_records=500)  # a new process over the same directory
    assert reopened.pending == 13
    reopened.append([{"n": 13}])
    assert _drain(reopened) == list(range(14))
    assert reopened.pending == 0 and list(tmp_path.iterdir()) == []


def test_over_the_bound_the_oldest_go_first_and_are_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=3)
    for n in range(5):
        spool.append([{"n": n}])
    assert (spool.pending, spool.dropped) == (3, 2)
    assert _drain(spool) == [2, 3, 4]


def test_a_segment_being_replayed_is_not_dropped_under_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=2)
    spool.append([{"n": 0}])
    batch = spool.take_oldest()
    assert batch is not None
    spool.append([{"n": 1}, {"n": 2}, {"n": 3}])  # over the bound while n=0 is in flight
    assert batch.path.exists()  # the in-flight one stays; the oldest others make room
    assert (spool.pending, spool.dropped) == (2, 2)
    spool.remove(batch.path)
    assert _drain(spool) == [3]


def test_torn_and_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([{"n": 0}, {"n": 1}])
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("a") as handle:
        handle.write('[1, 2]\n{"n": 2')  # not an object, then a line cut by a power loss
    reopened = Spool(tmp_path)
    assert reopened.pending == 4
    assert _drain(reopened) == [0, 1]
    assert reopened.dropped == 2
