"""RtpEndpoint over real UDP on 127.0.0.1, fed with the packets real Asterisk sent."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import pytest

from pbx_router.media.codecs import FORMATS, decode_payload
from pbx_router.media.endpoint import RtpEndpoint
from pbx_router.media.rtp import parse_rtp, serialize_rtp

from media_captures import path, summary

SLIN16 = FORMATS["slin16"]


def recorded_slin16_stream() -> list[bytes]:
    """The externalMedia slin16 capture as the datagrams Asterisk sent (see test_media_rtp)."""
    info = summary("slin16/externalmedia_rtp_summary.json")
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", bytes.fromhex(info["first_packets"][0]["header_hex"]))
    payloads = path("slin16/externalmedia_slin16_payload.raw").read_bytes()
    return [
        struct.pack("!BBHII", b0, b1, (seq + i) & 0xFFFF, ts + 320 * i, ssrc) + payloads[i * 640 : (i + 1) * 640]
        for i in range(info["packets"])
    ]


@contextmanager
def udp_sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.002)


async def collect(ep: RtpEndpoint, count: int, timeout: float = 3.0) -> list[bytes]:
    out: list[bytes] = []
    frames: AsyncIterator[bytes] = ep.frames()
    async with asyncio.timeout(timeout):
        async for frame in frames:
            out.append(frame)
            if len(out) == count:
                break
    return out


@pytest.fixture
async def endpoint() -> AsyncIterator[RtpEndpoint]:
    ep = await RtpEndpoint.open("127.0.0.1", 0, SLIN16)
    try:
        yield ep
    finally:
        ep.close()


def with_(wire: bytes, **changes: object) -> bytes:
    from dataclasses import replace

    return serialize_rtp(replace(parse_rtp(wire), **changes))  # type: ignore[arg-type]


async def test_legit_stream_survives_strangers_garbage_and_wrong_packets(endpoint: RtpEndpoint) -> None:
    stream = recorded_slin16_stream()
    dest = endpoint.local_address
    with udp_sender() as asterisk, udp_sender() as stranger:
        endpoint.expect_peer(*asterisk.getsockname())
        junk = 0
        for i, wire in enumerate(stream):
            asterisk.sendto(wire, dest)
            if i % 10 == 3:
                stranger.sendto(wire, dest)  # a perfect copy, from the wrong address
                stranger.sendto(with_(wire, ssrc=1), dest)
                asterisk.sendto(b"\x00garbage", dest)  # malformed (version 0)
                asterisk.sendto(with_(wire, payload_type=0), dest)  # wrong PT
                asterisk.sendto(wire + bytes(4000), dest)  # oversized
                asterisk.sendto(with_(wire, ssrc=0xDEADBEEF, sequence_number=7), dest)  # changed SSRC
                junk += 6
            if i % 10 == 9:  # keep the socket buffer from overflowing
                await until(lambda: endpoint.stats.received >= i + 1 + junk)  # noqa: B023 - awaited here
        frames = await collect(endpoint, len(stream))
        await until(lambda: endpoint.stats.received == len(stream) + junk)

    assert frames == [decode_payload(SLIN16, parse_rtp(w).payload) for w in stream]
    st = endpoint.stats
    batches = len(range(3, len(stream), 10))
    assert (st.dropped_foreign, st.dropped_malformed, st.dropped_payload_type) == (2 * batches, batches, batches)
    assert (st.dropped_oversize, st.dropped_ssrc, st.lost) == (batches, batches, 0)
    assert st.decoded == len(stream)


async def test_locks_to_the_first_sender_until_told_the_real_one(endpoint: RtpEndpoint) -> None:
    stream = recorded_slin16_stream()[:6]
    dest = endpoint.local_address
    with udp_sender() as first, udp_sender() as real:
        first.sendto(b"junk before anything valid", dest)  # garbage does not lock
        first.sendto(stream[0], dest)
        await until(lambda: endpoint.stats.decoded == 1)
        real.sendto(stream[1], dest)
        await until(lambda: endpoint.stats.dropped_foreign == 1)
        assert endpoint.peer == first.getsockname()

        endpoint.expect_peer(*real.getsockname())  # UNICASTRTP_LOCAL_ADDRESS/PORT arrived
        for wire in stream[2:]:
            real.sendto(wire, dest)
        first.sendto(stream[5], dest)
        frames = await collect(endpoint, 5)
        await until(lambda: endpoint.stats.dropped_foreign == 2)
    assert frames == [decode_payload(SLIN16, parse_rtp(w).payload) for w in [stream[0], *stream[2:]]]


async def test_reordering_and_loss_over_udp(endpoint: RtpEndpoint) -> None:
    stream = recorded_slin16_stream()[10:20]
    order = [0, 2, 1, 3, 3, 5, 6, 7, 8, 9]  # 1/2 swapped, 3 duplicated, 4 lost
    with udp_sender() as asterisk:
        endpoint.expect_peer(*asterisk.getsockname())
        for i in order:
            asterisk.sendto(stream[i], endpoint.local_address)
        frames = await collect(endpoint, 10)
    want = [decode_payload(SLIN16, parse_rtp(w).payload) for w in stream]
    want[4] = bytes(640)  # a lost packet is one frame of silence: time stays true
    assert frames == want
    assert (endpoint.stats.lost, endpoint.stats.duplicates) == (1, 1)


async def test_a_hole_at_the_end_of_a_burst_does_not_hold_audio_back(endpoint: RtpEndpoint) -> None:
    # externalMedia stops sending when the bridge goes quiet: packets behind a hole must still
    # come out (after the short hole timer), not wait for the next burst.
    stream = recorded_slin16_stream()[:4]
    with udp_sender() as asterisk:
        endpoint.expect_peer(*asterisk.getsockname())
        for i in (0, 2, 3):
            asterisk.sendto(stream[i], endpoint.local_address)
        frames = await collect(endpoint, 4)
    assert frames[1] == bytes(640) and frames[3] == decode_payload(SLIN16, parse_rtp(stream[3]).payload)


async def test_full_queue_drops_and_counts_and_close_ends_the_reader() -> None:
    ep = await RtpEndpoint.open("127.0.0.1", 0, SLIN16, queue_size=5)
    try:
        stream = recorded_slin16_stream()[:20]
        with udp_sender() as asterisk:
            for wire in stream:
                asterisk.sendto(wire, ep.local_address)
            await until(lambda: ep.stats.received == 20)
        assert ep.stats.dropped_queue_full == 15
        ep.close()
        got = [f async for f in ep.frames()]  # the 5 queued, then the end
        assert len(got) == 5
    finally:
        ep.close()


async def test_a_lasting_ssrc_change_from_the_peer_is_adopted() -> None:
    ep = await RtpEndpoint.open("127.0.0.1", 0, SLIN16, ssrc_adopt_after=5)
    try:
        stream = recorded_slin16_stream()[:12]
        with udp_sender() as asterisk:
            ep.expect_peer(*asterisk.getsockname())
            asterisk.sendto(stream[0], ep.local_address)
            for wire in stream[1:]:
                asterisk.sendto(with_(wire, ssrc=0x1234), ep.local_address)
            frames = await collect(ep, 1 + 7)  # 4 dropped, then the 5th adopts the new source
        assert ep.stats.dropped_ssrc == 4
        assert frames[-1] == decode_payload(SLIN16, parse_rtp(stream[11]).payload)
    finally:
        ep.close()


async def test_send_produces_rtp_asterisk_can_read(endpoint: RtpEndpoint) -> None:
    pcm = bytes(range(256)) * 2 + bytes(128)  # 320 samples, 20 ms of slin16
    with udp_sender() as asterisk:
        asterisk.setblocking(False)
        with pytest.raises(RuntimeError):
            await endpoint.send(pcm)  # nowhere to send yet
        endpoint.expect_peer(*asterisk.getsockname())
        await endpoint.send(pcm)
        await endpoint.send(pcm)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(3):
            first = parse_rtp(await loop.sock_recv(asterisk, 2048))
            second = parse_rtp(await loop.sock_recv(asterisk, 2048))
    assert first.payload_type == 118 and first.marker and not second.marker
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 320) & 0xFFFFFFFF
    assert decode_payload(SLIN16, first.payload) == pcm


async def test_ulaw_endpoint_decodes_the_recorded_ulaw_call() -> None:
    ep = await RtpEndpoint.open("127.0.0.1", 0, FORMATS["ulaw"])
    try:
        info = summary("holding/listener_rtp_summary.json")
        header = bytes.fromhex(info["first_packets"][0]["header_hex"])
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", header)
        payload = path("holding/listener_payload.ulaw").read_bytes()
        with udp_sender() as asterisk:
            for i in range(20):
                wire = struct.pack("!BBHII", b0, b1, seq + i, ts + 160 * i, ssrc) + payload[160 * i : 160 * (i + 1)]
                asterisk.sendto(wire, ep.local_address)
            frames = await collect(ep, 20)
        assert b"".join(frames) == decode_payload(FORMATS["ulaw"], payload[: 160 * 20])
    finally:
        ep.close()

