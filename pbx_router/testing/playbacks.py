"""Playbacks in the emulated Asterisk: one queue per target (channel or bridge), items played in
turn with PlaybackStarted / Continuing / Finished, stop and control, failure on hangup.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pbx_router.testing.call import PlaybackRecord
from pbx_router.testing.model import Bridge, Playback
from pbx_router.testing.sounds import plan_media
from pbx_router.testing.state import AriError, PbxState


class PlaybacksMixin(PbxState):
    """Queued and current playbacks per target URI."""

    # ----------------------------------------------------------------- playbacks
    def play(self, target_uri: str, app_name: str, media: list[str], playback_id: str | None,
             language: str) -> dict[str, Any]:
        if not media or not all(media):
            raise AriError(500, "Failed to queue media for playback")
        if playback_id and playback_id in self._playbacks:
            raise AriError(409, "Playback with the given id already exists")
        playback = Playback(playback_id or str(uuid.uuid4()), media, target_uri, app_name,
                            language)
        self._playbacks[playback.id] = playback
        body = playback.json()  # snapshot as queued; PlaybackStarted still beats the reply
        self._pending.setdefault(target_uri, []).append(playback)
        if target_uri not in self._current:
            self._start_next(target_uri)
        return body

    async def channel_commands_done(self, channel_ids: list[str]) -> None:
        """Asterisk runs a channel's commands in order on the channel's own thread: a channel
        playing a file (or with files queued) takes an addChannel only when they have ended (seen
        on a real Asterisk 22.10.1: the request waited for the announcement, issue 11, D3)."""
        def busy() -> bool:
            return any(self._current.get(f"channel:{c}") is not None or self._pending.get(f"channel:{c}")
                       for c in channel_ids)

        while busy():
            if self._playback_ended is None:
                self._playback_ended = asyncio.Event()
            await self._playback_ended.wait()

    def _notify_playback_ended(self) -> None:
        ended, self._playback_ended = self._playback_ended, None
        if ended is not None:
            ended.set()

    def _start_next(self, target_uri: str) -> None:
        queue = self._pending.get(target_uri)
        while queue:
            playback = queue.pop(0)
            if playback.id not in self._playbacks:
                continue
            self._current[target_uri] = playback
            self._begin_item(playback)
            return

    def _bridge_of(self, playback: Playback) -> Bridge | None:
        if playback.target_uri.startswith("bridge:"):
            return self._bridges.get(playback.target_uri[7:])
        return None

    def _begin_item(self, playback: Playback) -> None:
        bridge = self._bridge_of(playback)
        if bridge is not None and bridge.bridge_type != "holding" and playback.index == 0:
            bridge.announcers.insert(0, f"Announcer/ARI-{self._seq_name('unreal')};2")
            self._refresh_bridge_vars(bridge, skip_single=False)
        plan = plan_media(playback.media_uri, self.sounds)
        playback.state = "playing"
        playback.started_wall = time.time()
        self._playback_event(playback, "PlaybackStarted")
        self._record(playback, started=True)
        if plan.failed:
            self._finish(playback, "failed")
            return
        if plan.vanishes:
            # Recorded: PlaybackStarted, then never a PlaybackFinished; the playback is gone.
            self._playbacks.pop(playback.id, None)
            self._current.pop(playback.target_uri, None)
            self._start_next(playback.target_uri)
            self._notify_playback_ended()
            return
        playback.remaining = plan.seconds
        self._run_item(playback)

    def _run_item(self, playback: Playback) -> None:
        playback.resumed_at = self._now()

        async def wait_then_advance() -> None:
            await asyncio.sleep(playback.remaining)
            self._advance(playback)

        task = asyncio.get_running_loop().create_task(wait_then_advance())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._report)
        playback.task = task

    def _advance(self, playback: Playback) -> None:
        playback.task = None
        if playback.index + 1 < len(playback.media):
            playback.index += 1
            self._playback_event(playback, "PlaybackContinuing")
            plan = plan_media(playback.media_uri, self.sounds)
            if plan.failed or plan.vanishes:
                self._finish(playback, "failed")
                return
            playback.remaining = plan.seconds
            self._run_item(playback)
            return
        self._finish(playback, "done")

    def _finish(self, playback: Playback, state: str) -> None:
        if playback.task is not None and playback.task is not asyncio.current_task():
            playback.task.cancel()
        playback.task = None
        playback.state = state
        self._playbacks.pop(playback.id, None)
        self._playback_event(playback, "PlaybackFinished")
        self._record(playback, started=False)
        bridge = self._bridge_of(playback)
        if bridge is not None and bridge.announcers and bridge.bridge_type != "holding":
            announcer = next((a for a in bridge.announcers if "ARI_MOH" not in a), None)
            if announcer is not None:
                bridge.announcers.remove(announcer)
                self._refresh_bridge_vars(bridge, skip_single=False)
        if self._current.get(playback.target_uri) is playback:
            del self._current[playback.target_uri]
            self._start_next(playback.target_uri)
        self._notify_playback_ended()

    def _record(self, playback: Playback, started: bool) -> None:
        if not playback.target_uri.startswith("channel:"):
            return
        handle = self._handles.get(playback.target_uri[8:])
        if handle is None:
            return
        if started:
            handle.playbacks.append(PlaybackRecord(playback.id, playback.media_uri,
                                                   self._now(), None, "playing"))
            return
        for record in reversed(handle.playbacks):
            if record.playback_id == playback.id and record.stopped_at is None:
                record.stopped_at = self._now()
                record.state = playback.state
                break

    def stop_playback(self, playback: Playback) -> None:
        if self._current.get(playback.target_uri) is playback:
            self._finish(playback, "done")
            return
        queue = self._pending.get(playback.target_uri, [])
        if playback in queue:
            queue.remove(playback)
        playback.state = "done"
        self._playbacks.pop(playback.id, None)
        self._playback_event(playback, "PlaybackFinished")

    def control_playback(self, playback: Playback, operation: str) -> None:
        if operation not in ("pause", "unpause", "restart", "reverse", "forward"):
            raise AriError(400, "Invalid operation parameter")
        if self._current.get(playback.target_uri) is not playback:
            raise AriError(409, "Playback not currently playing")
        if operation == "pause" and playback.state == "playing":
            assert playback.task is not None
            playback.task.cancel()
            playback.task = None
            playback.remaining = max(0.0, playback.remaining - (self._now() - playback.resumed_at))
            playback.state = "paused"
        elif operation == "unpause" and playback.state == "paused":
            playback.state = "playing"
            self._playback_event(playback, "PlaybackStarted")
            self._run_item(playback)
        elif operation in ("restart", "reverse", "forward"):
            full = plan_media(playback.media_uri, self.sounds).seconds
            left = playback.remaining
            if playback.state == "playing":
                left -= self._now() - playback.resumed_at
            new_left = {"restart": full, "reverse": min(full, left + 3.0),
                        "forward": max(0.0, left - 3.0)}[operation]
            if playback.task is not None:
                playback.task.cancel()
                playback.task = None
            playback.remaining = new_left
            if playback.state == "playing":
                self._run_item(playback)

    def _fail_playbacks(self, target_uri: str) -> None:
        """The target hung up: the playing item and every queued one end as "failed"."""
        current = self._current.pop(target_uri, None)
        queued = self._pending.pop(target_uri, [])
        if current is not None:
            self._finish(current, "failed")
        for playback in queued:
            if playback.id in self._playbacks:
                playback.state = "playing"
                self._playback_event(playback, "PlaybackStarted")
                self._record(playback, started=True)
                self._finish(playback, "failed")

    def _stop_target_playbacks(self, target_uri: str, state: str) -> None:
        current = self._current.pop(target_uri, None)
        self._pending.pop(target_uri, None)
        if current is not None:
            self._finish(current, state)
