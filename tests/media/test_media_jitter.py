"""Jitter buffer: what the reader gets for reordered, duplicated, lost and late packets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_router.media.jitter import JitterBuffer
from pbx_router.media.rtp import RtpPacket


def pkt(seq: int) -> RtpPacket:
    seq &= 0xFFFF
    return RtpPacket(2, False, False, False, 118, seq, seq * 320, 0x53AFE873, payload=seq.to_bytes(2, "big"))


def run(jb: JitterBuffer, seqs: list[int]) -> list[int | None]:
    out: list[int | None] = []
    for s in seqs:
        jb.push(pkt(s))
        out += [p.sequence_number if p else None for p in jb.pop_ready()]
    return out


def test_in_order_stream_passes_straight_through() -> None:
    jb = JitterBuffer(depth_packets=3)
    out: list[int | None] = []
    for s in range(100, 110):
        jb.push(pkt(s))
        ready = jb.pop_ready()
        assert [p.sequence_number for p in ready if p] == [s]  # no added delay
        out += [p.sequence_number if p else None for p in ready]
    assert out == list(range(100, 110))
    assert (jb.stats.received, jb.stats.lost, jb.stats.reordered) == (10, 0, 0)


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer(depth_packets=3)
    assert run(jb, [1, 3, 2, 5, 4, 6]) == [1, 2, 3, 4, 5, 6]
    assert jb.stats.reordered == 2 and jb.stats.lost == 0


def test_duplicates_are_dropped_and_counted() -> None:
    jb = JitterBuffer(depth_packets=3)
    assert run(jb, [1, 1, 3, 3, 2, 2, 4]) == [1, 2, 3, 4]
    assert jb.stats.duplicates == 3


def test_a_hole_is_declared_lost_after_depth_packets() -> None:
    jb = JitterBuffer(depth_packets=3)
    assert run(jb, [1, 3, 4]) == [1]  # still waiting for 2
    assert run(jb, [5]) == [None, 3, 4, 5]
    assert jb.stats.lost == 1
    assert run(jb, [2]) == []  # too late now
    assert jb.stats.late == 1


def test_burst_loss_reports_one_none_per_packet() -> None:
    jb = JitterBuffer(depth_packets=2)
    assert run(jb, [10, 15, 16]) == [10, None, None, None, None, 15, 16]
    assert jb.stats.lost == 4


def test_flush_releases_what_a_trailing_hole_holds_and_keeps_numbering() -> None:
    jb = JitterBuffer(depth_packets=5)
    assert run(jb, [1, 3]) == [1]
    assert [p.sequence_number if p else None for p in jb.flush()] == [None, 3]
    assert run(jb, [4, 5]) == [4, 5]  # continues after the flush
    assert run(jb, [2]) == [] and jb.stats.late == 1


def test_sequence_wraps_around() -> None:
    jb = JitterBuffer(depth_packets=3)
    assert run(jb, [65534, 0, 65535, 1]) == [65534, 65535, 0, 1]
    assert jb.stats.lost == 0


def test_a_big_jump_is_a_new_numbering_not_thousands_of_losses() -> None:
    jb = JitterBuffer(depth_packets=3, max_packets=50)
    assert run(jb, [1, 2, 30000, 30001]) == [1, 2, 30000, 30001]
    assert jb.stats.lost == 0 and jb.stats.resyncs == 1


@settings(max_examples=150, deadline=None)
@given(st.permutations(list(range(40))), st.integers(0, 65535))
def test_any_arrival_order_gives_each_slot_once_in_order(order: list[int], base: int) -> None:
    jb = JitterBuffer(depth_packets=3, max_packets=50)
    out = run(jb, [base + i for i in order]) + [p.sequence_number if p else None for p in jb.flush()]
    got = [s for s in out if s is not None]
    # Never out of order, never twice; every slot is either delivered or counted lost or late.
    assert got == sorted(got, key=lambda s: (s - base) & 0xFFFF) and len(set(got)) == len(got)
    assert len(got) + jb.stats.late == 40
    assert out.count(None) == jb.stats.lost
