"""The UDP side of an externalMedia channel: paced RTP out, counted RTP in."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable

from pbx_router.log import get_logger
from pbx_router.testing.audio import RtpFormat, Samples, encode

log = get_logger(__name__)

FRAME_SECONDS = 0.020
# Asked once per 20 ms tick: (frame index since start, loop time of the frame) -> PCM or None
# (None = nothing in the bridge this tick, so nothing is sent, as Asterisk does).
FrameSource = Callable[[int, float], "Samples | None"]


def rtp_header(payload_type: int, seq: int, ts: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type & 0x7F, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


class ExternalMediaStream(asyncio.DatagramProtocol):
    def __init__(self, fmt: RtpFormat, remote: tuple[str, int]) -> None:
        self.fmt = fmt
        self.remote = remote
        self.ssrc = random.getrandbits(32)
        self._seq0 = random.getrandbits(16)
        self.sent_packets = 0
        self.received_packets = 0
        self.received_bytes = 0
        self.malformed_received = 0
        self._transport: asyncio.DatagramTransport | None = None
        self.local_port = 0

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.local_port = int(transport.get_extra_info("sockname")[1])
        return self.local_port

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        # The daemon may send audio back; counting it is all the emulator does with it.
        if len(data) < 12 or data[0] >> 6 != 2:
            self.malformed_received += 1
            return
        self.received_packets += 1
        self.received_bytes += len(data) - 12

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: not fatal
        log.debug("externalmedia_udp_error", error=str(exc))

    async def run(self, source: FrameSource) -> None:
        """Send one frame per 20 ms against an absolute clock, so pacing never drifts."""
        loop = asyncio.get_running_loop()
        samples = self.fmt.samples_per_frame
        start = loop.time()
        first_sent_frame: int | None = None
        frame = 0
        while self._transport is not None:
            due = start + frame * FRAME_SECONDS
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pcm = source(frame, due)
            if pcm is not None:
                if first_sent_frame is None:
                    first_sent_frame = frame
                # ts starts at one frame and follows the clock, also across silent gaps.
                ts = samples * (frame - first_sent_frame + 1)
                packet = rtp_header(self.fmt.payload_type, self._seq0 + self.sent_packets, ts,
                                    self.ssrc) + encode(pcm, self.fmt)
                self._transport.sendto(packet, self.remote)
                self.sent_packets += 1
            frame += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
