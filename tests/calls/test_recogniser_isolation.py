"""One caller's recognition hangs while others are speaking on the same recogniser worker: that
caller alone goes on with the keypad, the others are understood and routed by what they said."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from pbx_router.speech.faults import FAULT_ENV
from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
RULES = ROOT / "examples" / "clinic.yaml"
OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # a Tuesday morning
KEYPAD_MENU = "sound:custom/clinic-keypad-menu"

# One worker: every caller's utterance is decoded by the same process.
LISTENING = f"""rules: {RULES}
speech: {{workers: 1, expected_sessions: 3, no_input_ms: 4000}}
media: {{rtp_port_min: 41400, rtp_port_max: 41499}}
"""


def agent_of(pbx: AsteriskEmulator, call: Any) -> str | None:
    for n in (1, 2, 3):
        ep = f"PJSIP/agent{n}"
        if any(leg.channel_id in call.bridged_with for leg in pbx.endpoint(ep).channels):
            return ep
    return None


async def test_a_stuck_recognition_sends_that_caller_alone_to_the_keypad(
    pbx: AsteriskEmulator, start_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recogniser hangs for good on an utterance with "operator" in it (a decoder stuck on
    # one caller's audio); the daemon's worker processes inherit the fault.
    monkeypatch.setenv(FAULT_ENV, "stall-on:operator")
    pbx.sounds["hello-world"] = 2.5
    pbx.sounds[KEYPAD_MENU.removeprefix("sound:")] = 1.0
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    for n in (1, 2, 3):
        pbx.add_endpoint(f"PJSIP/agent{n}", AgentBehaviour.answer_after(0.3))
    daemon = await start_daemon(LISTENING)
    daemon.app.brain.clock = lambda: OPEN
    pool = daemon.app.brain.speech
    [pid] = pool.worker_pids

    stuck = await pbx.place_call(caller_number="+15557000001", dialled="100",
                                 audio=AUDIO / "operator_02.wav", audio_at=0.3)
    # The others are still speaking when the stuck utterance is handed to the recogniser.
    refill = await pbx.place_call(caller_number="+15557000002", dialled="100",
                                  audio=AUDIO / "refill_01.wav", audio_at=0.6)
    billing = await pbx.place_call(caller_number="+15557000003", dialled="100",
                                   audio=AUDIO / "billing_01.wav", audio_at=0.6)

    await refill.wait_for(lambda c: c.fate == "bridged", timeout=40)
    await billing.wait_for(lambda c: c.fate == "bridged", timeout=40)
    assert agent_of(pbx, refill) == "PJSIP/agent2"  # the pharmacy line
    assert agent_of(pbx, billing) == "PJSIP/agent1"  # billing
    for call in (refill, billing):
        assert KEYPAD_MENU not in [p.media_uri for p in call.playbacks]

    # The stuck caller is offered the keypad, and a key still gets them where they want to go:
    # the front desk's line (whose staff are busy with the other two callers).
    await stuck.wait_for(lambda c: KEYPAD_MENU in [p.media_uri for p in c.playbacks], timeout=30)
    await stuck.send_dtmf("0")
    await eventually(lambda: stuck.channel_id in getattr(pbx.bridges.get("queue-frontdesk"), "channels", ()),
                     timeout=30, what="the stuck caller waiting for the front desk")
    # One stuck utterance is not a reason to replace the worker every call is using.
    assert pool.stats.stalls == 1 and pool.stats.restarts == 0 and pool.worker_pids == [pid]
    for call in (stuck, refill, billing):
        await call.hangup()
    await eventually(lambda: not daemon.supervisor.calls, what="calls ended")
