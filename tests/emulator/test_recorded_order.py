"""The emulator's event order, step for step, against what a real Asterisk 22.10.1 sent."""

from __future__ import annotations

from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from tests.emulator.conftest import AriTestClient
from tests.emulator.recordings import load, reduce, role_by_name


async def test_sipp_call_with_external_media_matches_recording(pbx: AsteriskEmulator,
                                                               ari: AriTestClient) -> None:
    """sipp scenario: externalMedia bridged with a caller, DTMF, prompt, caller BYE, cleanup."""
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="sipp-test")
    em = await ari.ok("POST", "/channels/externalMedia", app="pbx-router",
                      external_host="127.0.0.1:40000", format="ulaw")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
    call = await pbx.place_call(caller_number="softphone", caller_name="Soft Phone",
                                dialled="100", dtmf=[(0.05, "5")])
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=call.channel_id)
    await ari.wait_event(lambda e: e["type"] == "ChannelDtmfReceived")
    await ari.ok("POST", f"/channels/{call.channel_id}/play", media="sound:hello-world")
    await ari.wait_event(lambda e: e["type"] == "PlaybackFinished")
    await call.hangup()
    await ari.ok("DELETE", f"/channels/{em['id']}")
    await ari.ok("DELETE", f"/bridges/{bridge['id']}")
    await ari.wait_event(lambda e: e["type"] == "BridgeDestroyed")

    roles = role_by_name({"PJSIP/softphone": "caller", "UnicastRTP/": "em"})
    assert reduce(ari.events, roles) == reduce(load("sipp"), roles)


async def test_agent_originate_answer_and_app_hangup_matches_recording(
        pbx: AsteriskEmulator, ari: AriTestClient) -> None:
    """agent-dial A: originate with app; StasisStart only on answer; app hangs the agent up."""
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_after(0.05))
    call = await pbx.place_call(caller_number="5550101", caller_name="Caller A")
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    agent = await ari.ok("POST", "/channels", endpoint="PJSIP/agent1", app="pbx-router",
                         appArgs="agent,queue-x", callerId="Queue X <5550100>", timeout=30)
    assert agent["state"] == "Down" and agent["dialplan"]["app_name"] == "AppDial2"
    assert agent["caller"] == agent["connected"] == {"name": "Queue X", "number": "5550100"}
    start = await ari.wait_event(lambda e: e["type"] == "StasisStart"
                                 and e["channel"]["id"] == agent["id"])
    assert start["args"] == ["agent", "queue-x"] and start["channel"]["state"] == "Up"
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="agent-a")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel",
                 channel=f"{call.channel_id},{agent['id']}")
    assert call.bridged_with == {agent["id"]} and call.fate == "bridged"
    await ari.ok("DELETE", f"/channels/{agent['id']}")
    assert call.fate == "in_stasis"  # the caller stays in the bridge and in Stasis
    await ari.ok("DELETE", f"/channels/{call.channel_id}")
    await ari.ok("DELETE", f"/bridges/{bridge['id']}")
    await ari.wait_event(lambda e: e["type"] == "BridgeDestroyed")

    recorded = load("agent-dial")
    a_end = next(i for i, e in enumerate(recorded) if e["type"] == "BridgeDestroyed")
    agent_role = role_by_name({"PJSIP/agent1": "agent"})

    def steps(events: list[dict[str, object]]) -> list[tuple[str, str, str]]:
        # The recorded caller was a Local channel; ours is PJSIP, so the agent also gets
        # BRIDGEPVTCALLID (set when the peer is PJSIP, as the UnicastRTP leg did in sipp).
        return [s for s in reduce(events, agent_role) if "BRIDGEPVTCALLID" not in s[2]]
    assert steps(ari.events) == steps(recorded[: a_end + 1])
    assert call.fate == "hung_up_by_app"


async def test_agent_without_uas_is_destroyed_after_timeout(pbx: AsteriskEmulator,
                                                            ari: AriTestClient) -> None:
    pbx.add_endpoint("PJSIP/agent2", AgentBehaviour.never_answer())
    agent = await ari.ok("POST", "/channels", endpoint="PJSIP/agent2", app="pbx-router",
                         appArgs="agent,queue-x", callerId="Queue X <5550100>", timeout=0.3)
    status, _ = await ari.call("GET", f"/channels/{agent['id']}")
    assert status == 200
    destroyed = await ari.wait_event(lambda e: e["type"] == "ChannelDestroyed")
    assert (destroyed["cause"], destroyed["cause_txt"], destroyed["tech_cause"]) == (
        19, "User alerting, no answer", 480)
    assert [e["type"] for e in ari.of_channel(agent["id"])] == ["Dial", "ChannelDestroyed"]
    status, body = await ari.call("GET", f"/channels/{agent['id']}")
    assert (status, body) == (404, {"message": "Channel not found"})


async def test_create_then_dial_matches_recording(pbx: AsteriskEmulator,
                                                  ari: AriTestClient) -> None:
    """agent-dial D: /channels/create is in Stasis at once (Down); /dial rings it."""
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_then_hangup(0.1, 0.1))
    call = await pbx.place_call(caller_number="5550404", caller_name="Caller D")
    await ari.ok("POST", f"/channels/{call.channel_id}/answer")
    leg = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="pbx-router",
                       appArgs="agent,create-dial", channelId="agent-d-leg",
                       originator=call.channel_id)
    assert leg["dialplan"]["app_name"] == "" and leg["state"] == "Down"
    await ari.wait_event(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == leg["id"])
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="agent-d")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=call.channel_id)
    await ari.ok("POST", f"/channels/{leg['id']}/dial", caller=call.channel_id, timeout=10)
    status, body = await ari.call("POST", f"/channels/{leg['id']}/dial", timeout=10)
    assert (status, body) == (409, {"message": "Channel is not in the 'Down' state"})
    await ari.wait_event(lambda e: e["type"] == "Dial" and e["dialstatus"] == "ANSWER")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=leg["id"])
    agent_call = pbx.handle(leg["id"])
    await agent_call.wait_for(lambda c: not c.alive)
    await ari.ok("DELETE", f"/bridges/{bridge['id']}")

    recorded = load("agent-dial")
    d_start = next(i for i, e in enumerate(recorded)
                   if e.get("channel", {}).get("id") == "agent-d-leg")
    role = role_by_name({"PJSIP/agent1": "agent"})
    want = [s for s in reduce(recorded[d_start:], role)
            if s[0] != "BridgeDestroyed" and "BRIDGEPVTCALLID" not in s[2]]
    # Recorded D: the agent BYE carried cause 16; the emulator's BYE carries none (like B).
    want = [("ChannelHangupRequest", "agent", "") if s[0] == "ChannelHangupRequest" else s
            for s in want]
    got = [s for s in reduce(ari.events, role)
           if s[0] != "BridgeDestroyed" and "BRIDGEPVTCALLID" not in s[2]]
    assert got == want, (got, want)


async def test_busy_agent_and_unreachable_endpoint(pbx: AsteriskEmulator,
                                                   ari: AriTestClient) -> None:
    pbx.add_endpoint("PJSIP/agent3", AgentBehaviour.busy())
    pbx.add_endpoint("PJSIP/agent4", AgentBehaviour.unreachable())
    agent = await ari.ok("POST", "/channels", endpoint="PJSIP/agent3", app="pbx-router")
    destroyed = await ari.wait_event(lambda e: e["type"] == "ChannelDestroyed")
    assert (destroyed["cause"], destroyed["cause_txt"]) == (17, "User busy")
    assert [(e["type"], e.get("dialstatus")) for e in ari.of_channel(agent["id"])] == [
        ("Dial", ""), ("Dial", "BUSY"), ("ChannelDestroyed", None)]
    for endpoint in ("PJSIP/agent4", "PJSIP/nobody", "Bogus/x"):
        status, body = await ari.call("POST", "/channels", endpoint=endpoint, app="pbx-router")
        assert (status, body) == (500, {"error": "Allocation failed"})


async def test_endpoint_subscription_doubles_channel_events(pbx: AsteriskEmulator,
                                                            ari: AriTestClient) -> None:
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_after(0.0))
    app = await ari.ok("POST", "/applications/pbx-router/subscription",
                       eventSource="endpoint:PJSIP/agent1")
    assert app["endpoint_ids"] == ["PJSIP/agent1"]
    agent = await ari.ok("POST", "/channels", endpoint="PJSIP/agent1", app="pbx-router",
                         appArgs="agent,busy-test", callerId="States <5554444>")
    await ari.wait_event(lambda e: e["type"] == "StasisStart")
    await ari.ok("DELETE", f"/channels/{agent['id']}")
    await ari.wait_event(lambda e: e["type"] == "EndpointStateChange"
                         and e["endpoint"]["channel_ids"] == [])
    types = [e["type"] for e in ari.events]
    for doubled in ("Dial", "ChannelStateChange", "ChannelHangupRequest", "ChannelDestroyed"):
        assert types.count(doubled) % 2 == 0 and types.count(doubled) >= 2, doubled
    assert types.count("StasisStart") == 1 and types.count("StasisEnd") == 1
    assert types[:5] == ["EndpointStateChange", "ChannelCreated", "ChannelDialplan",
                         "ChannelCallerId", "ChannelConnectedLine"]
    status, body = await ari.call("POST", "/applications/pbx-router/subscription",
                                  eventSource="endpoint:PJSIP/nobody")
    assert (status, body) == (422, {"message": "Event source does not exist"})
