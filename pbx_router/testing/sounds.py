"""Media durations: what a playback of a media URI lasts, or why it cannot play."""

from __future__ import annotations

from dataclasses import dataclass

# Core-sounds durations in seconds. hello-world (1.40 s) and beep (0.42 s) are measured from the
# recordings (PlaybackStarted -> PlaybackFinished); the rest are close to the en core sounds.
DEFAULT_SOUNDS: dict[str, float] = {
    "hello-world": 1.40,
    "beep": 0.42,
    "demo-congrats": 13.5,
    "demo-thanks": 4.5,
    "pls-hold-while-try": 2.6,
    "please-try-again": 1.3,
    "goodbye": 0.8,
    "auth-thankyou": 1.0,
    "silence/1": 1.0,
    "silence/2": 2.0,
    "silence/3": 3.0,
    "silence/5": 5.0,
    "silence/10": 10.0,
    "vm-intro": 3.5,
    "vm-goodbye": 0.9,
    "vm-press": 0.6,
    "vm-enter-num-to-call": 2.1,
    "vm-theperson": 1.3,
    "vm-isunavail": 1.7,
    "vm-isonphone": 1.4,
    "vm-sorry": 0.8,
    "queue-thankyou": 2.2,
    "queue-youarenext": 1.5,
    "queue-thereare": 0.9,
    "queue-callswaiting": 1.4,
    "queue-holdtime": 2.3,
    "queue-minutes": 0.7,
    "queue-seconds": 0.7,
    "queue-reporthold": 1.5,
    "queue-periodic-announce": 4.0,
    "queue-less-than": 0.8,
    "transfer": 1.2,
    "pbx-invalid": 2.2,
    "custom/refill": 3.0,
    "custom/bargein_caller": 6.0,
}
DEFAULT_SOUNDS.update({f"digits/{d}": 0.5 for d in range(10)})
DEFAULT_SOUNDS.update({f"digits/{d}": 0.55 for d in range(10, 20)})
DEFAULT_SOUNDS.update({f"digits/{d}": 0.55 for d in range(20, 100, 10)})
DEFAULT_SOUNDS.update({"digits/hundred": 0.5, "digits/thousand": 0.6, "digits/oh": 0.4})

TONE_SECONDS = 3.0
_SPOKEN_DIGIT_SECONDS = 0.5


@dataclass(frozen=True)
class MediaPlan:
    """How one media URI behaves: lasts ``seconds``, fails at once, or vanishes (bad scheme)."""

    seconds: float
    failed: bool = False
    vanishes: bool = False


def plan_media(uri: str, sounds: dict[str, float]) -> MediaPlan:
    scheme, _, rest = uri.partition(":")
    if scheme == "sound":
        duration = sounds.get(rest)
        return MediaPlan(0.0, failed=True) if duration is None else MediaPlan(duration)
    if scheme == "number":
        digits = rest.lstrip("-")
        return MediaPlan(_SPOKEN_DIGIT_SECONDS * max(1, len(digits)) + 0.2) if digits.isdigit() \
            else MediaPlan(0.0, failed=True)
    if scheme in ("digits", "characters"):
        return MediaPlan(_SPOKEN_DIGIT_SECONDS * len(rest)) if rest else MediaPlan(0.0, failed=True)
    if scheme == "tone":
        return MediaPlan(TONE_SECONDS)
    if scheme == "recording":
        return MediaPlan(0.0, failed=True)
    # Asterisk accepts an unknown scheme, starts it, and then silently drops it (FINDINGS §8).
    return MediaPlan(0.0, vanishes=True)
