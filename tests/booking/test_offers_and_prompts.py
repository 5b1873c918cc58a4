"""Pure parts: which slots are offered, and the prompt files an admin installs."""

from __future__ import annotations

import datetime as dt
import wave
from zoneinfo import ZoneInfo

from pbx_router.calls import booking_prompts
from pbx_router.scheduling import Slot
from pbx_router.scheduling.offers import spread_offers

NY = ZoneInfo("America/New_York")


def slot(day: int, hour: int, minute: int = 0, provider: str = "dr-a") -> Slot:
    start = dt.datetime(2026, 12, day, hour, minute, tzinfo=NY)
    return Slot(provider, "checkup", start, start + dt.timedelta(minutes=30))


def test_offers_take_the_earliest_slot_of_each_day_first() -> None:
    slots = [slot(1, 9), slot(1, 9, 30), slot(1, 10), slot(2, 8), slot(2, 8, 30), slot(3, 14)]
    assert spread_offers(slots, NY) == [slot(1, 9), slot(2, 8), slot(3, 14)]


def test_with_fewer_days_than_offers_times_are_an_hour_apart_and_in_order() -> None:
    slots = [slot(1, 9), slot(1, 9, 30), slot(1, 10), slot(1, 10, 30), slot(1, 11)]
    assert spread_offers(slots, NY) == [slot(1, 9), slot(1, 10), slot(1, 11)]


def test_declined_slots_are_not_offered_again_and_few_slots_give_few_offers() -> None:
    slots = [slot(1, 9), slot(2, 9)]
    assert spread_offers(slots, NY, exclude=[slot(1, 9).start]) == [slot(2, 9)]
    assert spread_offers([], NY) == []


def test_every_prompt_the_flow_plays_has_text_and_an_asterisk_playable_wav() -> None:
    texts = booking_prompts.prompt_texts()
    files = booking_prompts.rendered_files()
    assert set(booking_prompts.USED) <= set(texts)
    assert set(texts) == set(files), "run scripts/render_prompts.sh after editing prompts.yaml"
    for name, path in files.items():
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000), name
            assert 0.3 < w.getnframes() / 8000 < 15, name
    assert booking_prompts.sound("booked") == "sound:pbx-router/booked"
