"""What a waiting caller hears: Asterisk core-sound prompts in app_queue's order."""

from __future__ import annotations

import pytest

from pbx_router.queues.announce import (
    announcement_media,
    holdtime_media,
    position_media,
)


def test_first_in_line_hears_you_are_next_then_thank_you() -> None:
    assert announcement_media(1, None) == ("sound:queue-youarenext", "sound:queue-thankyou")


def test_later_callers_hear_their_number_and_the_estimated_hold_time() -> None:
    assert announcement_media(4, 330) == (
        "sound:queue-thereare", "number:4", "sound:queue-callswaiting",
        "sound:queue-holdtime", "number:6", "sound:queue-minutes",
        "sound:queue-thankyou",
    )


@pytest.mark.parametrize(
    ("seconds", "spoken"),
    [
        (None, ()),
        (float("nan"), ()),
        (0, ()),
        (29, ()),
        (30, ("sound:queue-holdtime", "sound:queue-less-than", "number:2", "sound:queue-minutes")),
        (89, ("sound:queue-holdtime", "sound:queue-less-than", "number:2", "sound:queue-minutes")),
        (90, ("sound:queue-holdtime", "number:2", "sound:queue-minutes")),
        (10_000, ("sound:queue-holdtime", "number:60", "sound:queue-minutes")),
    ],
)
def test_hold_time_is_rounded_like_app_queue_and_omitted_when_unknown_or_short(seconds: float | None, spoken: tuple[str, ...]) -> None:
    assert holdtime_media(seconds) == spoken


def test_switches_leave_only_what_was_asked_and_nothing_means_silence() -> None:
    assert announcement_media(3, 600, say_position=False) == (
        "sound:queue-holdtime", "number:10", "sound:queue-minutes", "sound:queue-thankyou",
    )
    assert announcement_media(3, 10, say_position=False) == ()
    assert announcement_media(2, 600, say_holdtime=False)[:3] == position_media(2)


def test_every_sound_used_exists_in_the_emulator_core_sounds() -> None:
    from pbx_router.testing.sounds import DEFAULT_SOUNDS

    media = set(announcement_media(5, 600)) | set(announcement_media(1, 60))
    sounds = {m.removeprefix("sound:") for m in media if m.startswith("sound:")}
    assert sounds <= set(DEFAULT_SOUNDS)


def test_position_zero_is_a_bug_in_the_caller() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        position_media(0)
