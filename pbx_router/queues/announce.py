"""Position and expected-wait announcements as ARI media URIs, from Asterisk's core sounds.

The sentence follows what app_queue says, so callers hear the familiar prompts:

* first in line:  ``queue-youarenext`` ("Your call is now first in line ...")
* otherwise:      ``queue-thereare`` ("You are currently caller number") N ``queue-callswaiting``
* hold time:      ``queue-holdtime`` ("The estimated hold time is currently") then either
                  ``queue-less-than`` 2 ``queue-minutes`` (one minute, as app_queue rounds) or
                  N ``queue-minutes``; nothing when under half a minute or unknown
* always last:    ``queue-thankyou`` ("Thank you for your patience")

Each item is one ARI media URI; the call layer passes the tuple to one
``POST /channels/{id}/play?media=a,b,c`` (ARI plays a list in order).
"""

from __future__ import annotations

import math

SOUND_YOU_ARE_NEXT = "sound:queue-youarenext"
SOUND_THERE_ARE = "sound:queue-thereare"
SOUND_CALLS_WAITING = "sound:queue-callswaiting"
SOUND_HOLD_TIME = "sound:queue-holdtime"
SOUND_LESS_THAN = "sound:queue-less-than"
SOUND_MINUTES = "sound:queue-minutes"
SOUND_THANK_YOU = "sound:queue-thankyou"
# Past this, a spoken estimate is more alarming than useful and likely wrong; say the cap.
MAX_SPOKEN_MINUTES = 60


def position_media(position: int) -> tuple[str, ...]:
    if position < 1:
        raise ValueError(f"queue position starts at 1, got {position}")
    if position == 1:
        return (SOUND_YOU_ARE_NEXT,)
    return (SOUND_THERE_ARE, f"number:{position}", SOUND_CALLS_WAITING)


def holdtime_media(expected_wait_s: float | None) -> tuple[str, ...]:
    """Rounded to the nearest minute like app_queue; empty when unknown or under 30 s."""
    if expected_wait_s is None or not math.isfinite(expected_wait_s) or expected_wait_s < 30:
        return ()
    minutes = min(int((expected_wait_s + 30) // 60), MAX_SPOKEN_MINUTES)
    if minutes < 2:
        return (SOUND_HOLD_TIME, SOUND_LESS_THAN, "number:2", SOUND_MINUTES)
    return (SOUND_HOLD_TIME, f"number:{minutes}", SOUND_MINUTES)


def announcement_media(
    position: int,
    expected_wait_s: float | None,
    *,
    say_position: bool = True,
    say_holdtime: bool = True,
) -> tuple[str, ...]:
    """The full announcement; empty if there is nothing to say."""
    parts: tuple[str, ...] = ()
    if say_position:
        parts += position_media(position)
    if say_holdtime:
        parts += holdtime_media(expected_wait_s)
    return parts + (SOUND_THANK_YOU,) if parts else ()
