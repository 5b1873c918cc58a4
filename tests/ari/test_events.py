"""Every event recorded from a real Asterisk 22 parses into the right typed event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pbx_router.ari import events as ev
from pbx_router.ari.stream import KNOWN_TYPES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ari_events"
ALL_LINES = [
    (f.stem, line) for f in sorted(FIXTURES.glob("*.jsonl")) for line in f.read_text().splitlines() if line
]


@pytest.mark.parametrize(("scenario", "line"), ALL_LINES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(ALL_LINES)])
def test_recorded_event_parses_to_its_type(scenario: str, line: str) -> None:
    raw = json.loads(line)
    event = ev.parse_event(line)
    assert event.type == raw["type"]
    assert event.raw == raw
    assert event.type in KNOWN_TYPES
    if "channel" in raw:
        assert isinstance(event, ev.ChannelEvent)
        assert event.channel is not None and event.channel.id == raw["channel"]["id"]
        assert event.channel_ids() == (raw["channel"]["id"],)
    if "playback" in raw:
        assert isinstance(event, ev.PlaybackEvent)
        assert event.playback is not None and event.playback.target_uri == raw["playback"]["target_uri"]


def test_stasis_start_carries_dialplan_args_and_caller() -> None:
    line = next(line for s, line in ALL_LINES if s == "agent-dial" and '"StasisStart"' in line and '"agent"' in line)
    event = ev.parse_event(line)
    assert isinstance(event, ev.StasisStart)
    assert event.args[0] == "agent"


def test_playback_events_name_their_channel() -> None:
    line = next(line for s, line in ALL_LINES if s == "bargein" and '"PlaybackFinished"' in line)
    event = ev.parse_event(line)
    assert isinstance(event, ev.PlaybackFinished)
    assert event.channel_ids() == (event.raw["playback"]["target_uri"].split(":", 1)[1],)


def test_unknown_event_type_passes_through_untouched() -> None:
    text = '{"type":"SomethingNew","timestamp":"x","application":"pbx-router","payload":{"a":1}}'
    event = ev.parse_event(text)
    assert type(event) is ev.Event
    assert event.type == "SomethingNew" and event.raw["payload"] == {"a": 1}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1,2,3]",
        '"a string"',
        '{"no_type": 1}',
        '{"type": 5}',
        '{"type":"StasisStart","args":"notalist","channel":{"id":"1"}}',
        '{"type":"StasisEnd","channel":"not-an-object"}',
        '{"type":"StasisEnd","channel":{"name":"missing id"}}',
        '{"type":"PlaybackStarted","playback":{"id":7}}',
        b"\xff\xfe",
    ],
)
def test_malformed_messages_raise_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        ev.parse_event(text)


def test_deduplicator_drops_the_endpoint_subscription_copies() -> None:
    """FINDINGS §6: under an endpoint subscription most channel events arrive twice, identical."""
    lines = (FIXTURES / "states.jsonl").read_text().splitlines()
    dedup = ev.Deduplicator()
    kept = [line for line in lines if not dedup.seen(line)]
    assert len(kept) == len(set(lines))
    assert len(kept) < len(lines)
    # A repeat of something long gone is not a duplicate.
    small = ev.Deduplicator(size=2)
    assert not small.seen("a") and not small.seen("b") and not small.seen("c")
    assert not small.seen("a")
