"""Error bodies exactly as recorded (errors/rest/), authentication, and websocket life."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from pbx_router.testing import AsteriskEmulator

from tests.emulator.conftest import AUTH, AriTestClient

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "ari" / "recordings" / "errors"


def recorded(name: str) -> object:
    return json.loads((RECORDED / "rest" / f"{name}.json").read_text())


CASES = [
    ("get_missing_channel", 404, "GET", "/channels/no-such-channel", {}),
    ("play_missing_channel", 404, "POST", "/channels/no-such-channel/play", {"media": "sound:beep"}),
    ("hangup_missing_channel", 404, "DELETE", "/channels/no-such-channel", {}),
    ("get_missing_bridge", 404, "GET", "/bridges/no-such-bridge", {}),
    ("addchannel_missing_bridge", 404, "POST", "/bridges/no-such-bridge/addChannel",
     {"channel": "x"}),
    ("get_missing_playback", 404, "GET", "/playbacks/no-such-playback", {}),
    ("get_missing_recording", 404, "GET", "/recordings/stored/no-such-recording", {}),
    ("get_missing_sound", 404, "GET", "/sounds/no-such-sound", {}),
    ("get_missing_application", 404, "GET", "/applications/no-such-app", {}),
    ("externalmedia_without_format", 400, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "external_host": "127.0.0.1:40000"}),
    ("externalmedia_bad_format", 500, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "external_host": "127.0.0.1:40000", "format": "bogus"}),
    ("externalmedia_without_external_host", 400, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "format": "ulaw"}),
    ("externalmedia_without_app", 400, "POST", "/channels/externalMedia",
     {"external_host": "127.0.0.1:40000", "format": "ulaw"}),
    ("externalmedia_bad_encapsulation", 501, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "external_host": "127.0.0.1:40000", "format": "ulaw",
      "encapsulation": "bogus"}),
    ("externalmedia_rtp_over_tcp", 400, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "external_host": "127.0.0.1:40000", "format": "ulaw",
      "transport": "tcp"}),
    ("externalmedia_host_without_port", 400, "POST", "/channels/externalMedia",
     {"app": "pbx-router", "external_host": "no-port-here", "format": "ulaw"}),
    ("originate_missing_pjsip_endpoint", 500, "POST", "/channels",
     {"endpoint": "PJSIP/no-such-endpoint", "app": "pbx-router"}),
    ("originate_unknown_technology", 500, "POST", "/channels",
     {"endpoint": "Bogus/x", "app": "pbx-router"}),
    ("originate_endpoint_without_slash", 400, "POST", "/channels",
     {"endpoint": "no-slash", "app": "pbx-router"}),
    ("originate_without_endpoint", 400, "POST", "/channels", {"app": "pbx-router"}),
    ("originate_without_app_or_extension", 400, "POST", "/channels",
     {"endpoint": "PJSIP/softphone"}),
    ("create_missing_pjsip_endpoint", 500, "POST", "/channels/create",
     {"endpoint": "PJSIP/no-such-endpoint", "app": "pbx-router"}),
    ("unknown_route", 404, "GET", "/no-such-resource", {}),
    ("unknown_sub_route", 404, "GET", "/channels/x/no-such-sub", {}),
    ("wrong_method_put_channels", 405, "PUT", "/channels", {}),
    ("wrong_method_patch_bridges", 405, "PATCH", "/bridges", {}),
]


@pytest.mark.parametrize(("name", "status", "method", "path", "params"), CASES,
                         ids=[c[0] for c in CASES])
async def test_error_bodies_match_recording(ari: AriTestClient, name: str, status: int,
                                            method: str, path: str,
                                            params: dict[str, str]) -> None:
    assert await ari.call(method, path, **params) == (status, recorded(name))


async def test_call_state_errors(pbx: AsteriskEmulator, ari: AriTestClient) -> None:
    call = await pbx.place_call()
    cid = call.channel_id
    assert await ari.call("DELETE", f"/channels/{cid}", reason="bogus-reason") == (
        400, recorded("hangup_bad_reason"))
    await ari.ok("DELETE", f"/channels/{cid}", reason="normal")
    for method, path in (("POST", f"/channels/{cid}/answer"), ("DELETE", f"/channels/{cid}")):
        assert await ari.call(method, path) == (404, recorded("answer_hung_up_channel"))
    assert await ari.call("POST", "/channels", endpoint="PJSIP/softphone", app="pbx-router",
                          channelId=cid) == (409, recorded("originate_duplicate_channel_id_live"))
    async with ari.session.post(f"{pbx.base_url}/ari/channels", data="{not json",
                                params={"endpoint": "PJSIP/softphone", "app": "pbx-router"},
                                headers=AUTH) as reply:
        assert (reply.status, await reply.json()) == (400, recorded("originate_invalid_json_body"))
    assert [e["type"] for e in ari.of_channel(cid)] == [
        "StasisStart", "ChannelHangupRequest", "StasisEnd"]
    hangup = ari.of_channel(cid)[1]
    assert (hangup["cause"], hangup["soft"]) == (32, True)


async def test_authentication_and_non_ari_paths(pbx: AsteriskEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        for headers, params in (({}, {}), ({"Authorization": aiohttp.encode_basic_auth(
                "pbx-router", "wrong")}, {}), ({}, {"api_key": "pbx-router:wrong"})):
            async with session.get(f"{pbx.base_url}/ari/asterisk/info", headers=headers,
                                   params=params) as reply:
                assert reply.status == 401
                assert reply.headers["WWW-Authenticate"] == 'Basic realm="Asterisk REST Interface"'
                assert await reply.json() == {"message": "Authentication required"}
        async with session.get(f"{pbx.base_url}/ari/asterisk/ping",
                               params={"api_key": "pbx-router:secret"}) as reply:
            assert reply.status == 200 and (await reply.json())["ping"] == "pong"
        async with session.get(f"{pbx.base_url}/no-such-thing", headers=AUTH) as reply:
            assert reply.status == 404 and reply.content_type == "text/html"
        async with session.get(f"{pbx.base_url}/ari", headers=AUTH) as reply:
            assert (reply.status, await reply.json()) == (405, {"message": "Invalid method"})
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{pbx.base_url}/ari/events", headers=AUTH)
        assert refused.value.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError) as unauthorised:
            await session.ws_connect(f"{pbx.base_url}/ari/events", params={"app": "pbx-router"})
        assert unauthorised.value.status == 401


async def test_application_replaced_old_socket_stays_open_and_silent(
        pbx: AsteriskEmulator, ari: AriTestClient) -> None:
    second = AriTestClient(pbx, ari.session)
    await second.connect()
    await ari.wait_event(lambda e: e["type"] == "ApplicationReplaced")
    replaced = ari.events[-1]
    assert set(replaced) == {"type", "timestamp", "application", "asterisk_id"}
    call = await pbx.place_call()
    await second.wait_event(lambda e: e["type"] == "StasisStart")
    assert ari.ws is not None and not ari.ws.closed
    assert [e["type"] for e in ari.events] == ["ApplicationReplaced"]
    assert call.fate == "in_stasis"
    await second.close()


async def test_no_socket_drops_events_and_fails_new_calls(pbx: AsteriskEmulator,
                                                          ari: AriTestClient) -> None:
    call = await pbx.place_call()
    await pbx.drop_websockets()
    assert not pbx.ws_connected
    await ari.ok("POST", f"/channels/{call.channel_id}/variable", variable="ROUTER_STATE",
                 value="disconnected")  # still works over REST; its ChannelVarset is dropped
    failed = await pbx.place_call()
    assert failed.fate == "stasis_failed" and not failed.alive
    assert [a["name"] for a in await ari.ok("GET", "/applications")] == ["pbx-router"]

    reconnected = AriTestClient(pbx, ari.session)
    await reconnected.connect()
    assert await ari.ok("GET", f"/channels/{call.channel_id}/variable",
                        variable="ROUTER_STATE") == {"value": "disconnected"}
    await ari.ok("POST", f"/channels/{call.channel_id}/play", media="sound:beep")
    await reconnected.wait_event(lambda e: e["type"] == "PlaybackFinished")
    assert [e["type"] for e in reconnected.events] == ["PlaybackStarted", "PlaybackFinished"]
    assert [e["type"] for e in ari.events] == ["StasisStart"]
    await reconnected.close()


async def test_malformed_frames_and_restart(pbx: AsteriskEmulator, ari: AriTestClient) -> None:
    await pbx.send_raw("{not json")
    await pbx.send_raw('{"type":"NoSuchEvent"}')
    await ari.wait_event(lambda e: e.get("type") == "NoSuchEvent")
    assert ari.raw_frames == ["{not json", '{"type":"NoSuchEvent"}']
    await pbx.place_call()
    port = pbx.port
    await pbx.restart()
    assert pbx.port == port and not pbx.channels and not pbx.bridges and not pbx.ws_connected
    assert await ari.ok("GET", "/channels") == []
    ari.events = [e for e in ari.events if e.get("type") != "NoSuchEvent"]
