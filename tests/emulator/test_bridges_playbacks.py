"""Holding bridges, MOH, bridge errors, playback control, continue."""

from __future__ import annotations

from pbx_router.testing import AsteriskEmulator

from tests.emulator.conftest import AriTestClient


async def test_holding_bridge_fixed_id_moh_and_errors(pbx: AsteriskEmulator,
                                                      ari: AriTestClient) -> None:
    status, body = await ari.call("GET", "/bridges/queue-frontdesk")
    assert (status, body) == (404, {"message": "Bridge not found"})
    bridge = await ari.ok("POST", "/bridges", type="holding", bridgeId="queue-frontdesk",
                          name="queue-frontdesk")
    assert (bridge["technology"], bridge["bridge_type"]) == ("holding_bridge", "holding")
    conflict = {"message": "Bridge with id 'queue-frontdesk' already exists"}
    assert await ari.call("POST", "/bridges", type="holding", bridgeId="queue-frontdesk") == (
        409, conflict)
    assert await ari.call("POST", "/bridges/queue-frontdesk", type="holding") == (409, conflict)
    assert await ari.call("POST", "/bridges", type="mixing", bridgeId="queue-frontdesk") == (
        409, conflict)

    call = await pbx.place_call()
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    seen = len(ari.events)
    await ari.ok("POST", "/bridges/queue-frontdesk/addChannel", channel=call.channel_id,
                 role="participant")
    await ari.ok("POST", "/bridges/queue-frontdesk/moh", mohClass="default")
    await ari.ok("DELETE", "/bridges/queue-frontdesk/moh")
    assert await ari.call("DELETE", "/bridges/queue-frontdesk/moh") == (
        409, {"message": "Bridge isn't playing music"})
    await ari.ok("POST", "/bridges/queue-frontdesk/removeChannel", channel=call.channel_id)
    assert await ari.call("POST", "/bridges/queue-frontdesk/removeChannel",
                          channel=call.channel_id) == (422, {"message": "Channel not in this bridge"})
    await ari.ok("POST", "/bridges/queue-frontdesk/addChannel", channel=call.channel_id)
    await ari.ok("DELETE", "/bridges/queue-frontdesk")
    await ari.ok("GET", f"/channels/{call.channel_id}")  # still in Stasis
    await pbx.flush()
    assert [e["type"] for e in ari.events[seen:]] == [
        "ChannelEnteredBridge", "ChannelLeftBridge", "ChannelEnteredBridge", "ChannelLeftBridge"]
    # Re-usable after DELETE; BridgeDestroyed only with a subscription.
    await ari.ok("POST", "/bridges/queue-frontdesk", type="holding")
    app = await ari.ok("POST", "/applications/pbx-router/subscription",
                       eventSource="bridge:queue-frontdesk")
    assert app["bridge_ids"] == ["queue-frontdesk"]
    await ari.ok("DELETE", "/bridges/queue-frontdesk")
    await ari.wait_event(lambda e: e["type"] == "BridgeDestroyed")


async def test_add_channel_rules(pbx: AsteriskEmulator, ari: AriTestClient) -> None:
    call = await pbx.place_call()
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    path = f"/bridges/{bridge['id']}/addChannel"
    assert await ari.call("POST", path, channel="nope") == (400, {"message": "Channel not found"})
    assert await ari.call("POST", path, channel=f"{call.channel_id},nope") == (
        400, {"message": "Channel not found"})
    assert (await ari.ok("GET", f"/bridges/{bridge['id']}"))["channels"] == []
    assert await ari.call("POST", path) == (400, {"message": "Missing parameter channel"})
    await ari.ok("POST", f"/channels/{call.channel_id}/continue", context="from-pstn-fallback")
    assert await ari.call("POST", path, channel=call.channel_id) == (
        422, {"message": "Channel not in Stasis application"})


async def test_continue_to_missing_and_existing_context(pbx: AsteriskEmulator,
                                                        ari: AriTestClient) -> None:
    lost = await pbx.place_call()
    await ari.ok("POST", f"/channels/{lost.channel_id}/continue", context="no-such-context",
                 extension="1", priority=1)
    await lost.wait_for(lambda c: not c.alive)
    assert lost.fate == "continued" and lost.continued_to == ("no-such-context", "1", 1)
    assert [e["type"] for e in ari.of_channel(lost.channel_id)] == ["StasisStart", "StasisEnd"]

    pbx.add_context("from-pstn-fallback")
    kept = await pbx.place_call()
    await ari.ok("POST", f"/channels/{kept.channel_id}/continue", context="from-pstn-fallback",
                 extension="s", priority=1)
    assert kept.fate == "continued" and kept.alive
    assert await ari.call("POST", f"/channels/{kept.channel_id}/play", media="sound:beep") == (
        409, {"message": "Channel not in Stasis application"})


async def test_playback_stop_pause_list_and_failures(pbx: AsteriskEmulator,
                                                     ari: AriTestClient) -> None:
    pbx.sounds["demo-congrats"] = 5.0
    call = await pbx.place_call()
    cid = call.channel_id
    await ari.ok("POST", f"/channels/{cid}/answer")
    body = await ari.ok("POST", f"/channels/{cid}/play",
                        media="sound:demo-congrats,sound:hello-world", playbackId="pb-2")
    assert body["next_media_uri"] == "sound:hello-world"
    await ari.ok("POST", "/playbacks/pb-2/control", operation="pause")
    assert (await ari.ok("GET", "/playbacks/pb-2"))["state"] == "paused"
    await ari.ok("POST", "/playbacks/pb-2/control", operation="unpause")
    await ari.ok("DELETE", "/playbacks/pb-2")
    await ari.wait_event(lambda e: e["type"] == "PlaybackFinished")
    assert [(e["type"], e["playback"]["state"]) for e in ari.events if "playback" in e] == [
        ("PlaybackStarted", "playing"), ("PlaybackStarted", "playing"),
        ("PlaybackFinished", "done")]
    for method, path in (("GET", "/playbacks/pb-2"), ("DELETE", "/playbacks/pb-2")):
        assert await ari.call(method, path) == (404, {"message": "Playback not found"})

    missing = await ari.ok("POST", f"/channels/{cid}/play", media="sound:no-such-sound-file")
    finished = await ari.wait_event(lambda e: e["type"] == "PlaybackFinished"
                                    and e["playback"]["id"] == missing["id"])
    assert finished["playback"]["state"] == "failed"
    assert await ari.call("POST", f"/channels/{cid}/play") == (
        500, {"message": "Failed to queue media for playback"})

    long = await ari.ok("POST", f"/channels/{cid}/play", media="sound:demo-congrats")
    await call.hangup()
    finished = await ari.wait_event(lambda e: e["type"] == "PlaybackFinished"
                                    and e["playback"]["id"] == long["id"])
    assert finished["playback"]["state"] == "failed"
    assert ari.events[-1]["type"] == "StasisEnd"
