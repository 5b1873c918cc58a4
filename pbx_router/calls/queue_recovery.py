"""The queue service's recovery: events no call claimed (device states, legs whose caller has
gone) and, after every (re)connect, agents' device states and the callers found waiting in our
holding bridges put back in line (one part of :class:`~pbx_router.calls.queueing.QueueService`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from pbx_router.ari import AriError
from pbx_router.ari import events as ev
from pbx_router.ari.models import Bridge as AriBridge
from pbx_router.ari.models import Channel
from pbx_router.calls.call import Call
from pbx_router.calls.flow import bridge_id_for
from pbx_router.queues import (
    DEFAULT_PRIORITY,
)

if TYPE_CHECKING:
    pass

from pbx_router.calls.queue_state import (
    ADOPTION_WAIT_S,
    HOLDING_PREFIX,
    QUEUE_VAR,
    Member,
    QueueState,
    is_agent_leg,
    log,
    parse_place,
    urgency_of_place,
)


class QueueRecovery(QueueState):
    """Supervisor hooks: unclaimed events and resync."""

    # --- supervisor hooks -------------------------------------------------------------------

    def handle_unclaimed(self, event: ev.Event) -> bool:
        """Events no call claimed: agent device states, and legs whose caller has gone."""
        if isinstance(event, ev.DeviceStateChanged):
            if event.device_name in self.dispatcher.pool:
                self._push(self.dispatcher.set_device_state(event.device_name, event.device_state, self.clock()))
                return True
            return False
        if isinstance(event, ev.StasisStart) and event.channel is not None and is_agent_leg(event.channel.id):
            # An agent answered a leg after its caller left: hang it up, nobody is there.
            self.stats.late_legs_hung_up += 1
            self._spawn(self._hangup(event.channel.id), f"late-leg-{event.channel.id}")
            return True
        if isinstance(event, ev.ChannelEvent | ev.Dial) and any(is_agent_leg(c) for c in event.channel_ids()):
            return True  # the rest of a finished leg's life: expected, not worth counting
        return False

    async def _drop_stale_mixing(self, caller_id: str, bridges: dict[str, AriBridge]) -> None:
        """A caller restored to the line may have a mixing bridge that the dead daemon made while
        agents rang. It is empty while the caller waits and belongs to nobody now: delete it, and
        the next answer makes a fresh one of ours. (What held up connecting such callers on the
        real PBX, issue 11 D3, was the prompt still playing to them: see ``_connect``.)"""
        stale = bridges.get(bridge_id_for(caller_id))
        if stale is None or stale.channels:
            return
        with contextlib.suppress(AriError):
            await self.ari.delete_bridge(stale.id)
            log.info("queue_stale_mixing_bridge_deleted", bridge=stale.id)

    async def on_resync(self, channels: list[Channel], bridges: list[AriBridge]) -> None:
        """After every (re)connect: agent device states, then callers found in our holding
        bridges that this process does not know (a restart) are put back in line, in order."""
        try:
            await self._refresh_devices()
            now = self.clock()
            calls = self._supervisor_calls()
            by_id = {b.id: b for b in bridges}
            for bridge in bridges:
                name = bridge.id.removeprefix(HOLDING_PREFIX)
                if not bridge.id.startswith(HOLDING_PREFIX) or name not in self.section.queues:
                    continue
                # The bridge exists (with its music) from our previous life: no need to create it.
                if name not in self._holding:
                    self._holding[name] = asyncio.get_running_loop().create_task(asyncio.sleep(0))
                entries: list[tuple[str, int, float]] = []
                urgencies: dict[str, str] = {}
                for position, cid in enumerate(bridge.channels):
                    if cid in self.members or cid not in calls:
                        continue
                    raw = await self._read_place(cid)
                    place = parse_place(raw)
                    priority, joined_at = (place[1], place[2]) if place and place[0] == name else (
                        DEFAULT_PRIORITY, now - 1e-3 * (len(bridge.channels) - position))
                    entries.append((cid, priority, joined_at))
                    urgencies[cid] = urgency_of_place(raw)
                for cid, priority, joined_at in entries:
                    m = Member(cid, name, priority, joined_at, holding=bridge.id, urgency=urgencies[cid])
                    m.t_joined = time.perf_counter()
                    self.members[cid] = m
                    await self._drop_stale_mixing(cid, by_id)
                if entries:
                    escalating = [cid for cid, u in urgencies.items() if u == "emergency"]
                    actions, problems = self.dispatcher.restore_callers(name, entries, now,
                                                                        leave_when_empty=escalating)
                    self.stats.restored += len(entries)
                    for problem in problems:
                        log.warning("queue_restore_problem", problem=problem)
                    log.info("queue_restored", queue=name, callers=len(entries))
                    self._push(actions)
            live_legs = {leg for m in self.members.values() for leg in m.legs}
            # Legs a live call talks on (answered here, or found bridged by the supervisor's
            # adoption of a restarted daemon's conversation) are not stale.
            for call in calls.values():
                live_legs |= call.owned_channels
                if call.resume_talk_leg:
                    live_legs.add(call.resume_talk_leg)
            for chan in channels:
                if is_agent_leg(chan.id) and chan.id not in live_legs:
                    # Rung by a previous life of the daemon: its caller is rung afresh instead.
                    self.stats.stale_legs_hung_up += 1
                    await self._hangup(chan.id)
        finally:
            async with self._reconciled:
                self._reconciled_at = time.monotonic()
                self._reconciled.notify_all()

    async def _read_place(self, channel_id: str) -> str:
        try:
            return await self.ari.get_variable(channel_id, QUEUE_VAR)
        except AriError:
            return ""

    async def _refresh_devices(self) -> None:
        for agent in self.dispatcher.pool.all():
            name = agent.endpoint
            with contextlib.suppress(AriError):
                await self.ari.subscribe(f"deviceState:{name}")
            try:
                data = await self.ari.request("GET", f"/deviceStates/{quote(name, safe='')}")
            except AriError:
                continue
            state = str((data or {}).get("state") or "") if isinstance(data, dict) else ""
            if state:
                self._push(self.dispatcher.set_device_state(name, state, self.clock()))

    async def adopted_member(self, call: Call) -> Member | None:
        """For an adopted call: wait for the resync hook that ran after its adoption, then say
        whether it was waiting in one of our queues."""
        try:
            async with asyncio.timeout(ADOPTION_WAIT_S):
                async with self._reconciled:
                    await self._reconciled.wait_for(lambda: self._reconciled_at >= call.t_stasis)
        except TimeoutError:
            log.warning("queue_adoption_verdict_timeout")
            return None
        m = self.members.get(call.channel_id)
        return m if m is not None and m.flow is None else None
