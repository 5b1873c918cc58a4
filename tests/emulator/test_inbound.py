"""An inbound call as the daemon sees it: StasisStart, answer, prompt, hangup."""

from __future__ import annotations

from pbx_router.testing import AsteriskEmulator

from tests.emulator.conftest import AriTestClient


async def test_inbound_call_answered_played_and_hung_up(pbx: AsteriskEmulator,
                                                        ari: AriTestClient) -> None:
    call = await pbx.place_call(caller_number="+15551230000", caller_name="Pat Doe",
                                dialled="100")
    start = await ari.wait_event(lambda e: e["type"] == "StasisStart")
    assert start["args"] == ["100"]
    assert start["channel"]["state"] == "Ring"
    assert start["channel"]["caller"] == {"name": "Pat Doe", "number": "+15551230000"}
    assert start["channel"]["dialplan"]["app_data"] == "pbx-router,100"
    assert start["application"] == "pbx-router"

    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    body = await ari.ok("POST", f"/channels/{call.channel_id}/play", media="sound:hello-world")
    assert body["state"] == "queued" and body["target_uri"] == f"channel:{call.channel_id}"
    # PlaybackStarted went out before the 201 (FINDINGS intro).
    play_request = pbx.requests[-1]
    started = [i for i, e in enumerate(pbx.sent_events) if e["type"] == "PlaybackStarted"]
    assert started and started[0] < play_request.events_sent_before

    finished = await ari.wait_event(lambda e: e["type"] == "PlaybackFinished")
    assert finished["playback"]["state"] == "done"
    await call.hangup()
    await call.wait_for(lambda c: c.fate == "hung_up_by_caller")

    await ari.wait_event(lambda e: e["type"] == "StasisEnd")
    assert [e["type"] for e in ari.events] == [
        "StasisStart", "ChannelStateChange", "PlaybackStarted", "PlaybackFinished",
        "ChannelHangupRequest", "StasisEnd"]
    hangup = ari.events[4]
    assert "cause" not in hangup  # a caller BYE carries no cause (sipp recording)
    assert call.answered and [p.media_uri for p in call.playbacks] == ["sound:hello-world"]
    assert call.playbacks[0].state == "done"
    status, body = await ari.call("GET", f"/channels/{call.channel_id}")
    assert (status, body) == (404, {"message": "Channel not found"})
