"""Recorded event sequences, reduced to what must match: type, whose channel, key detail."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "ari" / "recordings"
Step = tuple[str, str, str]


def load(scenario: str) -> list[dict[str, Any]]:
    path = RECORDINGS / scenario / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reduce(events: list[dict[str, Any]], role_of: Callable[[dict[str, Any]], str | None]
           ) -> list[Step]:
    """(type, role, detail); RTP QoS varsets are dropped (the emulator has no RTP stack)."""
    steps: list[Step] = []
    for event in events:
        if event["type"] == "ChannelVarset" and event["variable"].startswith("RTPAUDIOQOS"):
            continue
        role = role_of(event)
        if role is None:
            continue
        detail = ""
        if event["type"] == "ChannelVarset":
            detail = f"{event['variable']}={'set' if event['value'] else ''}"
        elif event["type"] == "Dial":
            detail = event["dialstatus"]
        elif event["type"] == "ChannelStateChange":
            detail = event["channel"]["state"]
        elif event["type"] in ("PlaybackStarted", "PlaybackFinished"):
            detail = event["playback"]["state"]
        elif event["type"] in ("ChannelHangupRequest", "ChannelDestroyed"):
            detail = str(event.get("cause", ""))
        steps.append((event["type"], role, detail))
    return steps


def channel_of(event: dict[str, Any]) -> dict[str, Any] | None:
    return event.get("channel") or event.get("peer")


def role_by_name(mapping: dict[str, str]) -> Callable[[dict[str, Any]], str | None]:
    """Role from the channel name prefix; playback and bridge-only events keep their type."""
    def role(event: dict[str, Any]) -> str | None:
        channel = channel_of(event)
        if channel is None:
            return "playback" if "playback" in event else "bridge"
        for prefix, name in mapping.items():
            if channel["name"].startswith(prefix):
                return name
        return None
    return role
