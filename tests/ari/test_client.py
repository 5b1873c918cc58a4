"""The ARI client against the emulator: typed results, typed errors, the events stream's
reconnect, de-duplication and ApplicationReplaced handling."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import aiohttp
import pytest

from pbx_router.ari import (
    AriAuthError,
    AriBadRequest,
    AriClient,
    AriConflict,
    AriGone,
    AriServerError,
    AriTimeout,
    AriUnavailable,
    Backoff,
    EventStream,
)
from pbx_router.ari import events as ev
from pbx_router.testing import AsteriskEmulator

from helpers import eventually


@pytest.fixture
async def ari(pbx: AsteriskEmulator) -> Any:
    async with AriClient(pbx.base_url, "pbx-router", pbx.password, "pbx-router", request_timeout=2) as client:
        yield client


async def test_statuses_map_to_typed_errors(pbx: AsteriskEmulator, ari: AriClient) -> None:
    with pytest.raises(AriGone) as gone:
        await ari.get_channel("no-such-channel")
    assert gone.value.status == 404 and gone.value.message == "Channel not found"
    await ari.create_bridge("holding", bridge_id="queue-x")
    with pytest.raises(AriConflict) as conflict:
        await ari.create_bridge("holding", bridge_id="queue-x")
    assert "already exists" in conflict.value.message
    assert (await ari.get_or_create_bridge("queue-x", "holding")).id == "queue-x"
    with pytest.raises(AriBadRequest):
        await ari.external_media("no-port-here", fmt="ulaw")
    with pytest.raises(AriServerError) as server:
        await ari.originate("PJSIP/no-such-endpoint")
    assert server.value.message == "Allocation failed"  # Asterisk's {"error": ...} body


async def test_wrong_credentials_are_an_auth_error(pbx: AsteriskEmulator) -> None:
    async with AriClient(pbx.base_url, "pbx-router", "wrong", "pbx-router") as client:
        with pytest.raises(AriAuthError):
            await client.list_channels()


async def test_unreachable_asterisk_is_unavailable_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AriClient(f"http://127.0.0.1:{port}", "u", "p", "pbx-router", request_timeout=1) as client:
        with pytest.raises(AriUnavailable):
            await client.list_channels()


async def test_a_silent_server_is_a_timeout() -> None:
    async def never(_: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(3600)
        raise AssertionError

    app = aiohttp.web.Application()
    app.router.add_get("/ari/channels", never)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with AriClient(f"http://127.0.0.1:{port}", "u", "p", "pbx-router", request_timeout=0.3) as client:
            with pytest.raises(AriTimeout):
                await client.list_channels()
    finally:
        await runner.cleanup()


async def test_typed_results_for_a_call(pbx: AsteriskEmulator, ari: AriClient) -> None:
    received: list[ev.Event] = []
    stream = EventStream(ari, received.append, backoff=Backoff(0.05, 0.2))
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(stream.ready.wait(), 5)
        call = await pbx.place_call(caller_number="+15556000001", caller_name="Pat", dialled="100")
        start = await eventually(lambda: next((e for e in received if isinstance(e, ev.StasisStart)), None))
        assert start.channel.caller.number == "+15556000001" and start.args == ("100",)
        await ari.answer(call.channel_id)
        pb = await ari.play(call.channel_id, ["sound:hello-world"], playback_id="pb-1")
        assert pb.id == "pb-1" and pb.channel_id == call.channel_id
        finished = await eventually(lambda: next((e for e in received if isinstance(e, ev.PlaybackFinished)), None))
        assert finished.playback.state == "done"
        chans = await ari.list_channels()
        assert [c.id for c in chans] == [call.channel_id]
        assert chans[0].stasis_app() == "pbx-router" and chans[0].stasis_args() == ["100"]
        await call.hangup()
        await eventually(lambda: any(isinstance(e, ev.StasisEnd) for e in received))
        with pytest.raises(AriGone):
            await ari.answer(call.channel_id)  # after a hangup: normal, not an error to shout about
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_stream_reconnects_and_resyncs_after_every_drop(pbx: AsteriskEmulator, ari: AriClient) -> None:
    resyncs = 0

    async def resync() -> None:
        nonlocal resyncs
        resyncs += 1

    stream = EventStream(ari, lambda e: None, on_connected=resync, backoff=Backoff(0.05, 0.2))
    task = asyncio.create_task(stream.run())
    try:
        await eventually(lambda: resyncs == 1 and stream.ready.is_set(), what="first resync")
        for n in (2, 3):
            await pbx.drop_websockets()
            await eventually(lambda n=n: resyncs == n and stream.ready.is_set(), what=f"resync {n}")
        assert stream.stats.connects == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not stream.ready.is_set()


async def test_application_replaced_closes_the_silent_socket(pbx: AsteriskEmulator, ari: AriClient) -> None:
    stream = EventStream(ari, lambda e: None, backoff=Backoff(5.0, 5.0))
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(stream.ready.wait(), 5)
        # Another client takes the app over: Asterisk sends ApplicationReplaced to us.
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{pbx.base_url.replace('http', 'ws')}/ari/events",
                                    params={"app": "pbx-router", "api_key": f"pbx-router:{pbx.password}"}):
                await eventually(lambda: stream.stats.replaced == 1, what="ApplicationReplaced seen")
                await eventually(lambda: not stream.ready.is_set(), what="our socket closed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_backoff_doubles_to_the_cap_with_jitter_and_resets() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(10)]
    ceilings = [min(30.0, 0.5 * 2**i) for i in range(10)]
    for d, c in zip(delays, ceilings, strict=True):
        assert c / 2 <= d <= c
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    b.reset()
    assert b.next_delay() <= 0.5


def test_backoff_keeps_its_cap_through_a_long_outage() -> None:
    # Hours of Asterisk down: thousands of failed attempts, every delay still between half the
    # cap and the cap (the exponent once overflowed a float after ~1,000 and ended reconnecting).
    b = Backoff(0.5, 30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(3000)]
    assert all(15.0 <= d <= 30.0 for d in delays[10:])
