"""One UDP socket receiving a call's externalMedia RTP (and optionally sending audio back).

Everything that arrives is checked in this order, and whatever fails is dropped and counted,
never raised: size, sender address, RTP syntax, payload type, SSRC, then the jitter buffer.
Decoded native PCM goes into a bounded queue read with :meth:`RtpEndpoint.frames`.

The sender's address is learnt from the channel variables UNICASTRTP_LOCAL_ADDRESS/PORT
(:meth:`RtpEndpoint.expect_peer`); until then the endpoint locks to the first sender of a valid
packet, since Asterisk may start sending before the externalMedia HTTP reply arrives.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pbx_router.log import get_logger
from pbx_router.media.codecs import WireFormat, decode_payload, encode_payload
from pbx_router.media.jitter import JitterBuffer
from pbx_router.media.ports import PortPool
from pbx_router.media.rtp import RtpPacket, parse_rtp, serialize_rtp

__all__ = ["EndpointStats", "RtpEndpoint"]

log = get_logger(__name__)

Address = tuple[str, int]


@dataclass(slots=True)
class EndpointStats:
    received: int = 0  # datagrams seen, whatever they were
    decoded: int = 0  # frames queued for the reader (concealed losses included)
    dropped_foreign: int = 0
    dropped_ssrc: int = 0
    dropped_malformed: int = 0
    dropped_payload_type: int = 0
    dropped_oversize: int = 0
    dropped_queue_full: int = 0
    lost: int = 0  # sequence holes, each replaced by one frame of silence
    late: int = 0
    duplicates: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: RtpEndpoint) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._owner._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after a send to a peer that went away: not fatal for listening.
        log.debug("rtp_socket_error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._on_closed()


class RtpEndpoint:
    """Use :meth:`open` (or :meth:`open_from_pool`); one instance per listening call."""

    def __init__(
        self,
        fmt: WireFormat,
        *,
        queue_size: int = 200,
        jitter_depth: int = 3,
        ssrc_adopt_after: int | None = 50,
        hole_flush_ms: int = 120,
    ) -> None:
        self.fmt = fmt
        self.stats = EndpointStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._queue_size = queue_size
        # One extra slot so the end-of-stream marker always fits.
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_size + 1)
        self._jitter = JitterBuffer(depth_packets=jitter_depth)
        self._expected_peer: Address | None = None
        self._peer: Address | None = None
        self._ssrc: int | None = None
        # A persistent new SSRC from the same peer is a source change on Asterisk's side (e.g. a
        # re-bridge), not an attack: adopt it after this many consecutive packets (None: never).
        self._ssrc_adopt_after = ssrc_adopt_after
        self._candidate_ssrc: int | None = None
        self._candidate_count = 0
        self._hole_flush_s = hole_flush_ms / 1000
        self._hole_timer: asyncio.TimerHandle | None = None
        self._max_datagram = 12 + 60 + 4 * fmt.payload_bytes_per_frame + 1024
        self._closed = False
        self._pool: PortPool | None = None
        self._pool_port: int | None = None
        # Sending side: our own stream identity.
        self._tx_ssrc = secrets.randbits(32)
        self._tx_seq = secrets.randbits(16)
        self._tx_ts = secrets.randbits(32)
        self._tx_started = False

    # --- construction --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        fmt: WireFormat,
        *,
        queue_size: int = 200,
        jitter_depth: int = 3,
        ssrc_adopt_after: int | None = 50,
        hole_flush_ms: int = 120,
    ) -> RtpEndpoint:
        """Bind ``host:port`` (port 0: any) and start receiving. OSError if the port is taken."""
        self = cls(
            fmt,
            queue_size=queue_size,
            jitter_depth=jitter_depth,
            ssrc_adopt_after=ssrc_adopt_after,
            hole_flush_ms=hole_flush_ms,
        )
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host, port)
        )
        self._transport = transport
        return self

    @classmethod
    async def open_from_pool(
        cls,
        pool: PortPool,
        host: str,
        fmt: WireFormat,
        *,
        attempts: int = 5,
        queue_size: int = 200,
        ssrc_adopt_after: int | None = 50,
    ) -> RtpEndpoint:
        """Open on a port leased from ``pool``; :meth:`close` gives it back. A port some other
        process holds is skipped (and returned to the pool) up to ``attempts`` times."""
        last_error: OSError | None = None
        for _ in range(attempts):
            port = pool.acquire()
            try:
                endpoint = await cls.open(
                    host, port, fmt, queue_size=queue_size, ssrc_adopt_after=ssrc_adopt_after
                )
            except OSError as exc:
                pool.release(port)
                last_error = exc
                continue
            except BaseException:
                pool.release(port)  # cancelled mid-bind: never leak the port
                raise
            endpoint._pool, endpoint._pool_port = pool, port
            return endpoint
        assert last_error is not None
        raise last_error

    # --- public --------------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise RuntimeError("endpoint is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def peer(self) -> Address | None:
        """The address RTP is accepted from (expected or locked), if known."""
        return self._expected_peer or self._peer

    @property
    def closed(self) -> bool:
        return self._closed

    def expect_peer(self, host: str, port: int) -> None:
        """Accept RTP only from ``host:port`` (UNICASTRTP_LOCAL_ADDRESS/PORT) from now on."""
        peer = (host, int(port))
        if self._peer is not None and self._peer != peer:
            # We locked onto someone else before the reply came: start the stream afresh.
            log.warning("rtp_peer_corrected", locked=f"{self._peer[0]}:{self._peer[1]}",
                        expected=f"{host}:{port}")
            self._ssrc = None
            self._jitter.reset()  # what it holds came from the wrong sender
        self._expected_peer = peer
        self._peer = peer

    async def frames(self) -> AsyncIterator[bytes]:
        """Decoded PCM frames in sequence order until :meth:`close`. Each lost packet comes out
        as one frame of silence, so the sample count stays true to time within a burst."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def next_frame(self, timeout: float | None = None) -> bytes | None:
        """The next decoded frame, or None once closed; ``TimeoutError`` when nothing arrived
        within ``timeout`` (RTP from externalMedia stops while there is no audio). Unlike
        wrapping :meth:`frames` in ``wait_for``, a timeout here never finalises an iterator."""
        if self._closed and self._queue.empty():
            return None
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
        # with a frame arriving, and the reader would never stop.
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay closed for every later reader
        return item

    async def send(self, pcm: bytes) -> None:
        """Send one RTP packet carrying ``pcm`` (native PCM16 at the format's rate) to the peer.
        The caller paces (one call per frame_ms)."""
        if self._transport is None or self._closed:
            raise RuntimeError("endpoint is closed")
        peer = self.peer
        if peer is None:
            raise RuntimeError("no peer known yet: call expect_peer() first")
        payload = encode_payload(self.fmt, pcm)
        samples = len(payload) // self.fmt.bytes_per_sample
        pkt = RtpPacket(
            version=2, padding=False, extension=False, marker=not self._tx_started,
            payload_type=self.fmt.payload_type, sequence_number=self._tx_seq,
            timestamp=self._tx_ts, ssrc=self._tx_ssrc, payload=payload,
        )
        self._transport.sendto(serialize_rtp(pkt), peer)
        self._tx_started = True
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        self._tx_ts = (self._tx_ts + samples) & 0xFFFFFFFF

    def close(self) -> None:
        """Stop receiving, end :meth:`frames` and give the port back. Idempotent."""
        if self._transport is not None:
            self._transport.close()  # connection_lost -> _on_closed, on the next loop turn
        self._on_closed()

    # --- receive path --------------------------------------------------------------------------

    def _on_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hole_timer is not None:
            self._hole_timer.cancel()
        if self._pool is not None and self._pool_port is not None:
            self._pool.release(self._pool_port)
            self._pool_port = None
        self._queue.put_nowait(None)

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        st = self.stats
        st.received += 1
        if len(data) > self._max_datagram:
            st.dropped_oversize += 1
            return
        if self._peer is not None and addr != self._peer:
            if st.dropped_foreign == 0:
                log.warning("rtp_foreign_sender", sender=f"{addr[0]}:{addr[1]}")
            st.dropped_foreign += 1
            return
        try:
            pkt = parse_rtp(data)
        except ValueError:
            st.dropped_malformed += 1
            return
        if pkt.payload_type != self.fmt.payload_type:
            st.dropped_payload_type += 1
            return
        if self._peer is None:
            self._peer = addr
            log.info("rtp_peer_locked", sender=f"{addr[0]}:{addr[1]}")
        if not self._accept_ssrc(pkt.ssrc):
            st.dropped_ssrc += 1
            return
        self._jitter.push(pkt)
        self._deliver(self._jitter.pop_ready())
        self._arm_hole_timer()

    def _accept_ssrc(self, ssrc: int) -> bool:
        if self._ssrc is None or ssrc == self._ssrc:
            self._ssrc = ssrc
            self._candidate_ssrc, self._candidate_count = None, 0
            return True
        if self._ssrc_adopt_after is None:
            return False
        if ssrc == self._candidate_ssrc:
            self._candidate_count += 1
        else:
            self._candidate_ssrc, self._candidate_count = ssrc, 1
        if self._candidate_count < self._ssrc_adopt_after:
            return False
        log.info("rtp_ssrc_adopted", old=f"{self._ssrc:#x}", new=f"{ssrc:#x}")
        self._deliver(self._jitter.flush())
        self._jitter.reset()  # the new source has its own sequence numbering
        self._ssrc = ssrc
        self._candidate_ssrc, self._candidate_count = None, 0
        return True

    def _arm_hole_timer(self) -> None:
        # A hole at the end of a burst would hold the last packets until the next burst
        # (externalMedia pauses whenever the bridge is silent): release them after a short wait.
        if self._hole_timer is not None:
            self._hole_timer.cancel()
            self._hole_timer = None
        if self._jitter.holding:
            loop = asyncio.get_running_loop()
            self._hole_timer = loop.call_later(self._hole_flush_s, self._flush_holes)

    def _flush_holes(self) -> None:
        self._hole_timer = None
        if not self._closed:
            self._deliver(self._jitter.flush())

    def _deliver(self, packets: list[RtpPacket | None]) -> None:
        st = self.stats
        js = self._jitter.stats
        for pkt in packets:
            if pkt is None:
                pcm = bytes(self.fmt.samples_per_frame * 2)
            else:
                try:
                    pcm = decode_payload(self.fmt, pkt.payload)
                except ValueError:
                    st.dropped_malformed += 1
                    continue
            if self._queue.qsize() >= self._queue_size:
                st.dropped_queue_full += 1
                continue
            self._queue.put_nowait(pcm)
            st.decoded += 1
        st.lost, st.late, st.duplicates = js.lost, js.late, js.duplicates
