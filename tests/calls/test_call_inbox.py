"""A call's inbox never loses an event, even one that arrives as a wait is given up."""

from __future__ import annotations

import asyncio

import pytest

from pbx_router.ari import events as ev
from pbx_router.ari.models import Channel
from pbx_router.calls.call import Call


def dtmf(channel: Channel, digit: str) -> ev.ChannelDtmfReceived:
    return ev.ChannelDtmfReceived(type="ChannelDtmfReceived", channel=channel, digit=digit)


async def test_event_taken_as_a_wait_is_cancelled_is_kept_for_the_next_wait() -> None:
    channel = Channel(id="c1", name="PJSIP/softphone-1", state="Up")
    call = Call(channel, ("100",))
    waiter = asyncio.create_task(call.next_event(lambda e: isinstance(e, ev.ChannelDtmfReceived)))
    await asyncio.sleep(0)  # the waiter is now blocked on the inbox
    await asyncio.sleep(0)
    # The digit arrives and, in the same loop pass, the wait is abandoned (a turn timing out).
    call.deliver(dtmf(channel, "7"))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    e = await asyncio.wait_for(call.next_event(lambda e: isinstance(e, ev.ChannelDtmfReceived)), 1)
    assert isinstance(e, ev.ChannelDtmfReceived) and e.digit == "7"


def test_bad_numbers_in_an_event_do_not_cost_the_event() -> None:
    text = ('{"type":"ChannelDestroyed","cause":"x","cause_txt":"?","channel":{"id":"c1","name":"n","state":"Up"}}')
    e = ev.parse_event(text)
    assert isinstance(e, ev.ChannelDestroyed) and e.cause == 0 and e.channel is not None
