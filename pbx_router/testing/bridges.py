"""Bridges in the emulated Asterisk: create and destroy, members joining and leaving (with the
BRIDGEPEER / BRIDGEPVTCALLID variables and connected line they set), music on hold.
"""

from __future__ import annotations

import time
import uuid

from pbx_router.testing import wire
from pbx_router.testing.model import Bridge, Channel, Party
from pbx_router.testing.state import DEFAULT_APP, AriError, PbxState


class BridgesMixin(PbxState):
    """Mixing and holding bridges and their members."""

    # ----------------------------------------------------------------- bridges
    def create_bridge(self, bridge_id: str | None, types: str, name: str) -> Bridge:
        if bridge_id and bridge_id in self._bridges:
            raise AriError(409, f"Bridge with id '{bridge_id}' already exists")
        kinds = [t.strip() for t in types.split(",") if t.strip()]
        bridge_type = "holding" if "holding" in kinds else "mixing"
        bridge = Bridge(bridge_id or str(uuid.uuid4()), bridge_type, name, time.time())
        self._bridges[bridge.id] = bridge
        return bridge

    def _peer_names(self, bridge: Bridge, channel: Channel) -> list[str]:
        names = list(bridge.announcers)
        names += [self._channels[c].name for c in bridge.channels
                  if c != channel.id and c in self._channels]
        return names

    def _refresh_bridge_vars(self, bridge: Bridge, skip_single: bool) -> None:
        """BRIDGEPEER (and BRIDGEPVTCALLID when the peer is PJSIP) for each member in join
        order, emitted only when the value changes."""
        if bridge.bridge_type == "holding":
            return
        members = [self._channels[c] for c in bridge.channels if c in self._channels]
        if skip_single and len(members) + len(bridge.announcers) < 2:
            return
        for member in members:
            peers = self._peer_names(bridge, member)
            if not peers:
                continue
            peer_value = ",".join(peers)
            if member.bridge_vars.get("BRIDGEPEER") != peer_value:
                member.bridge_vars["BRIDGEPEER"] = peer_value
                self._varset(member, "BRIDGEPEER", peer_value)
                others = [self._channels[c] for c in bridge.channels
                          if c != member.id and c in self._channels]
                if len(others) == 1 and not bridge.announcers \
                        and others[0].technology == "PJSIP" \
                        and member.bridge_vars.get("BRIDGEPVTCALLID") != others[0].protocol_id:
                    member.bridge_vars["BRIDGEPVTCALLID"] = others[0].protocol_id
                    self._varset(member, "BRIDGEPVTCALLID", others[0].protocol_id)

    def _refresh_connected(self, bridge: Bridge) -> None:
        if bridge.bridge_type == "holding" or len(bridge.channels) != 2:
            return
        first, second = (self._channels[c] for c in bridge.channels)
        for member, peer in ((second, first), (first, second)):
            if (member.connected.name, member.connected.number) != \
                    (peer.caller.name, peer.caller.number):
                member.connected = Party(peer.caller.name, peer.caller.number)
                self._channel_event(member, "ChannelConnectedLine")

    def add_to_bridge(self, bridge: Bridge, channel_ids: list[str]) -> None:
        channels = []
        for channel_id in channel_ids:
            channel = self._channels.get(channel_id)
            if channel is None:
                raise AriError(400, "Channel not found")
            channels.append(channel)
        for channel in channels:
            if channel.app is None:
                raise AriError(422, "Channel not in Stasis application")
        added = False
        for channel in channels:
            if channel.bridge_id == bridge.id:
                continue
            if channel.bridge_id is not None and channel.bridge_id in self._bridges:
                self._leave_bridge(channel, self._bridges[channel.bridge_id])
            bridge.channels.append(channel.id)
            channel.bridge_id = bridge.id
            self._bridge_event(bridge, channel, "ChannelEnteredBridge")
            added = True
        if added:
            self._refresh_bridge_vars(bridge, skip_single=True)
            self._refresh_connected(bridge)
        self._update_bridged_fates(bridge)

    def _leave_bridge(self, channel: Channel, bridge: Bridge) -> None:
        if channel.id not in bridge.channels:
            return
        if bridge.bridge_type != "holding":
            for var in ("BRIDGEPEER", "BRIDGEPVTCALLID"):
                if channel.bridge_vars.get(var):
                    channel.bridge_vars[var] = ""
                    self._varset(channel, var, "")
        bridge.channels.remove(channel.id)
        channel.bridge_id = None
        self._bridge_event(bridge, channel, "ChannelLeftBridge")
        if not bridge.channels and bridge.moh_class is not None:
            # Asterisk's music announcer is a "lonely" bridge channel (res_stasis.c pushes it with
            # AST_BRIDGE_CHANNEL_FLAG_LONELY): left alone it leaves, and the music stops. The
            # next channel to enter hears nothing until music is started again (seen on a real
            # Asterisk 22.10.1: "Announcer/ARI_MOH-...;2 left 'holding_bridge'", then "Stopped
            # music on hold"). No ARI event: the announcer is hidden from ARI.
            bridge.moh_class = None
            bridge.announcers = [a for a in bridge.announcers if "ARI_MOH" not in a]
        if len(bridge.channels) + len(bridge.announcers) >= 2:
            self._refresh_bridge_vars(bridge, skip_single=True)
        handle = self._handles.get(channel.id)
        if handle is not None and handle.fate == "bridged":
            handle.fate = "in_stasis"
        self._update_bridged_fates(bridge)

    def _update_bridged_fates(self, bridge: Bridge) -> None:
        for member_id in bridge.channels:
            handle = self._handles.get(member_id)
            if handle is None or handle.fate not in ("in_stasis", "bridged"):
                continue
            others = [c for c in bridge.channels if c != member_id
                      and self._channels.get(c) is not None
                      and self._channels[c].kind in ("inbound", "originated", "created")]
            handle.fate = "bridged" if others else "in_stasis"

    def remove_from_bridge(self, bridge: Bridge, channel_ids: list[str]) -> None:
        channels = []
        for channel_id in channel_ids:
            channel = self._channels.get(channel_id)
            if channel is None:
                raise AriError(400, "Channel not found")
            if channel.app is None:
                raise AriError(422, "Channel not in Stasis application")
            if channel.bridge_id != bridge.id:
                raise AriError(422, "Channel not in this bridge")
            channels.append(channel)
        for channel in channels:
            self._leave_bridge(channel, bridge)

    def destroy_bridge(self, bridge: Bridge) -> None:
        self._stop_target_playbacks(f"bridge:{bridge.id}", state="done")
        for channel_id in list(bridge.channels):
            channel = self._channels.get(channel_id)
            if channel is not None:
                self._leave_bridge(channel, bridge)
        self._bridges.pop(bridge.id, None)
        bridge_json = bridge.json()
        for app in list(self._apps.values()):
            if bridge.id in app.bridge_ids or (bridge.destroy_visible and app.active
                                               and app.name == DEFAULT_APP) or app.subscribe_all:
                self._deliver(app, wire.event("BridgeDestroyed", app.name, bridge=bridge_json))
            if bridge.id in app.bridge_ids:
                app.bridge_ids.remove(bridge.id)

    def bridge_moh(self, bridge: Bridge, moh_class: str | None, start: bool) -> None:
        if not start:
            if bridge.moh_class is None:
                raise AriError(409, "Bridge isn't playing music")
            bridge.moh_class = None
            bridge.announcers = [a for a in bridge.announcers if "ARI_MOH" not in a]
            self._refresh_bridge_vars(bridge, skip_single=False)
            return
        if bridge.moh_class is None and bridge.bridge_type != "holding":
            bridge.announcers.insert(0, f"Announcer/ARI_MOH-{self._seq_name('unreal')};2")
            self._refresh_bridge_vars(bridge, skip_single=False)
        bridge.moh_class = moh_class or "default"
