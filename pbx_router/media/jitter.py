"""A small jitter buffer: RTP packets in arrival order -> packets in sequence order.

Pure (no clock): the owner decides when to :meth:`JitterBuffer.flush` (e.g. when RTP stops,
which externalMedia does whenever the bridge is silent). An in-order stream passes straight
through with no added delay; only a hole holds packets back, until either the missing packet
arrives or ``depth_packets`` later packets have, at which point the hole is reported as lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pbx_router.media.rtp import RtpPacket, seq_newer

__all__ = ["JitterBuffer", "JitterStats"]

_SEQ_MOD = 1 << 16


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    duplicates: int = 0
    late: int = 0  # arrived after its slot was released (played or declared lost)
    lost: int = 0  # slots released as None
    reordered: int = 0  # arrived after a newer packet, still in time
    resyncs: int = 0  # sequence jumps larger than max_packets: a new numbering, not a loss


class JitterBuffer:
    def __init__(self, depth_packets: int = 3, max_packets: int = 50) -> None:
        if depth_packets < 1 or max_packets < depth_packets:
            raise ValueError(f"need 1 <= depth_packets <= max_packets, got {depth_packets}, {max_packets}")
        self.depth_packets = depth_packets
        self.max_packets = max_packets
        self.stats = JitterStats()
        self._held: dict[int, RtpPacket] = {}
        self._next: int | None = None  # sequence number of the next slot to release
        self._highest: int | None = None
        self._ready: list[RtpPacket | None] = []
        # Recently delivered sequence numbers, to tell a duplicate from a late packet.
        self._released: deque[int] = deque(maxlen=max_packets)
        self._released_set: set[int] = set()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def holding(self) -> bool:
        """True when packets wait behind a hole (the owner may want to flush after a while)."""
        return bool(self._held)

    def push(self, pkt: RtpPacket) -> None:
        self.stats.received += 1
        seq = pkt.sequence_number
        if self._next is None:
            self._next = seq
            self._highest = seq
        assert self._highest is not None
        if seq in self._held:
            self.stats.duplicates += 1
            return
        ahead = (seq - self._next) % _SEQ_MOD
        if ahead >= _SEQ_MOD // 2:  # behind the release point
            if seq in self._released_set:
                self.stats.duplicates += 1
            elif (self._next - seq) % _SEQ_MOD > self.max_packets:
                self._resync(seq)  # far behind: the sender restarted its numbering
                self._held[seq] = pkt
                self._release()
            else:
                self.stats.late += 1
            return
        if ahead > self.max_packets:
            self._resync(seq)
        elif seq_newer(self._highest, seq):
            self.stats.reordered += 1
        self._held[seq] = pkt
        if self._highest is None or seq_newer(seq, self._highest):
            self._highest = seq
        self._release()

    def pop_ready(self) -> list[RtpPacket | None]:
        """Packets ready in sequence order; None marks one lost packet."""
        out, self._ready = self._ready, []
        return out

    def flush(self) -> list[RtpPacket | None]:
        """Release everything held (holes as None) and keep numbering for what follows."""
        while self._held:
            self._release_one()
        return self.pop_ready()

    def reset(self) -> None:
        """Forget the sequence state and anything held (a new source follows); keep the stats."""
        self._held.clear()
        self._ready.clear()
        self._next = None
        self._highest = None
        self._released.clear()
        self._released_set.clear()

    # --- internals -----------------------------------------------------------------------------

    def _resync(self, seq: int) -> None:
        # Hand over what we hold (holes included) but do not report the jump itself as loss:
        # a jump of thousands is a new numbering, and thousands of None would be fake silence.
        while self._held:
            self._release_one()
        self.stats.resyncs += 1
        self._next = seq
        self._highest = seq

    def _release(self) -> None:
        assert self._next is not None
        while self._held and (self._next in self._held or len(self._held) >= self.depth_packets):
            self._release_one()

    def _release_one(self) -> None:
        assert self._next is not None
        pkt = self._held.pop(self._next, None)
        if pkt is None:
            self.stats.lost += 1
        else:
            self._mark_released(self._next)
        self._ready.append(pkt)
        self._next = (self._next + 1) % _SEQ_MOD

    def _mark_released(self, seq: int) -> None:
        if len(self._released) == self._released.maxlen:
            self._released_set.discard(self._released[0])
        self._released.append(seq)
        self._released_set.add(seq)
