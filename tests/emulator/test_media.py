"""externalMedia RTP as a UDP socket in the test receives it."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
import soxr

from pbx_router.testing import AsteriskEmulator

from tests.emulator.conftest import AriTestClient


class RtpCollector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((data, addr))


def speech_like(seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.int16)


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def rtp_sink() -> tuple[RtpCollector, int]:
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        RtpCollector, local_addr=("127.0.0.1", 0))
    yield collector, transport.get_extra_info("sockname")[1]  # type: ignore[misc]
    transport.close()


async def test_snoop_in_streams_caller_audio_as_slin16(
        pbx: AsteriskEmulator, ari: AriTestClient, rtp_sink: tuple[RtpCollector, int]) -> None:
    collector, port = rtp_sink
    source = speech_like(0.4)
    call = await pbx.place_call(caller_number="5557777", audio=source.tobytes(), audio_at=0.2)
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    snoop = await ari.ok("POST", f"/channels/{call.channel_id}/snoop", spy="in",
                         app="pbx-router", appArgs=f"snoop-in,{call.channel_id}",
                         snoopId=f"snoop-in-{call.channel_id}")
    assert snoop["name"] == f"Snoop/{call.channel_id}-00000000" and snoop["state"] == "Up"
    # Its StasisStart went out before the reply, with its own args.
    start = next(e for e in pbx.sent_events if e["type"] == "StasisStart"
                 and e["channel"]["id"] == snoop["id"])
    assert start["args"] == ["snoop-in", call.channel_id]
    assert start["channel"]["dialplan"]["app_data"] == f"pbx-router,snoop-in,{call.channel_id}"
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="snoop-in")
    em = await ari.ok("POST", "/channels/externalMedia", app="pbx-router",
                      external_host=f"127.0.0.1:{port}", format="slin16")
    local_port = int(em["channelvars"]["UNICASTRTP_LOCAL_PORT"])
    status, var = await ari.call("GET", f"/channels/{em['id']}/variable",
                                 variable="UNICASTRTP_LOCAL_PORT")
    assert (status, var) == (200, {"value": str(local_port)})
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{snoop['id']},{em['id']}")
    await ari.ok("POST", f"/channels/{call.channel_id}/play", media="sound:hello-world")
    await wait_until(lambda: len(collector.packets) >= 40)

    headers = [struct.unpack("!BBHII", p[:12]) for p, _ in collector.packets]
    assert {addr for _, addr in collector.packets} == {("127.0.0.1", local_port)}
    assert {len(p) for p, _ in collector.packets} == {652}
    assert {h[0] for h in headers} == {0x80} and {h[1] for h in headers} == {118}
    assert {h[4] for h in headers} == {headers[0][4]}
    assert headers[0][3] == 320
    assert all((b[2] - a[2]) % 65536 == 1 and b[3] - a[3] == 320
               for a, b in zip(headers, headers[1:], strict=False))
    payload = b"".join(p[12:] for p, _ in collector.packets)
    big = np.frombuffer(payload, dtype=">i2").astype(np.float64)
    little = np.frombuffer(payload, dtype="<i2").astype(np.float64)
    assert not big[:320].any()  # continuous frames: silence before the caller speaks
    reference = soxr.resample(source.astype(np.float32), 8000, 16000)
    voiced = np.flatnonzero(big)
    segment = big[voiced[0]: voiced[0] + len(reference)]
    n = min(len(segment), len(reference))
    assert np.corrcoef(segment[:n], reference[:n])[0, 1] > 0.99  # the prompt is not in spy=in
    assert abs(np.corrcoef(little[voiced[0]:voiced[0] + n], reference[:n])[0, 1]) < 0.3


@pytest.mark.parametrize(("fmt", "payload_type", "size", "step"),
                         [("ulaw", 0, 160, 160), ("slin", 10, 320, 160), ("alaw", 8, 160, 160)])
async def test_external_media_bridged_with_caller_sends_only_while_audio(
        pbx: AsteriskEmulator, ari: AriTestClient, rtp_sink: tuple[RtpCollector, int],
        fmt: str, payload_type: int, size: int, step: int) -> None:
    collector, port = rtp_sink
    call = await pbx.place_call(audio=speech_like(0.2).tobytes(), audio_at=0.1)
    em = await ari.ok("POST", "/channels/externalMedia", app="pbx-router",
                      external_host=f"127.0.0.1:{port}", format=fmt)
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel",
                 channel=f"{call.channel_id},{em['id']}")
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    await wait_until(lambda: len(collector.packets) >= 10)
    await asyncio.wait_for(_quiet(collector), 3.0)
    assert 9 <= len(collector.packets) <= 11  # 0.2 s of audio = 10 frames, then nothing
    assert {p[1] & 0x7F for p, _ in collector.packets} == {payload_type}
    assert {len(p) - 12 for p, _ in collector.packets} == {size}
    ts = [struct.unpack("!I", p[4:8])[0] for p, _ in collector.packets]
    assert ts[0] == step and all(b - a == step for a, b in zip(ts, ts[1:], strict=False))


async def _quiet(collector: RtpCollector) -> None:
    """Until no packet arrived for 0.2 s."""
    while True:
        before = len(collector.packets)
        await asyncio.sleep(0.2)
        if len(collector.packets) == before:
            return
