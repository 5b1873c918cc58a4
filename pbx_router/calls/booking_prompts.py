"""The booking flow's own prompts: names in ``pbx_router/prompts/prompts.yaml``, played from
Asterisk's sounds directory as ``sound:pbx-router/<name>`` (see scripts/render_prompts.sh)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml

SOUND_DIR = "pbx-router"

ENTER_DOB = "enter-dob"
DOB_RETRY = "dob-retry"
ASK_REQUEST = "ask-request"
ASK_NEW_TIME = "ask-new-time"
OFFER_INTRO = "offer-intro"
OFFER_CHOOSE = "offer-choose"
NO_MATCH = "no-match"
SORRY_AGAIN = "sorry-again"
YOU_CHOSE = "you-chose"
CONFIRM_ASK = "confirm-ask"
BOOKED = "booked"
SLOT_TAKEN = "slot-taken"
TO_STAFF = "to-staff"
NEXT_APPOINTMENT = "next-appointment"
ASK_CANCEL = "ask-cancel"
ASK_RESCHEDULE = "ask-reschedule"
CONFIRM_MOVE = "confirm-move"
CANCELLED = "cancelled"
RESCHEDULED = "rescheduled"
NO_APPOINTMENTS = "no-appointments"

USED = (
    ENTER_DOB, DOB_RETRY, ASK_REQUEST, ASK_NEW_TIME, OFFER_INTRO, OFFER_CHOOSE, NO_MATCH, SORRY_AGAIN,
    YOU_CHOSE, CONFIRM_ASK, BOOKED, SLOT_TAKEN, TO_STAFF, NEXT_APPOINTMENT, ASK_CANCEL, ASK_RESCHEDULE,
    CONFIRM_MOVE, CANCELLED, RESCHEDULED, NO_APPOINTMENTS,
)


def sound(name: str) -> str:
    """The ARI media URI of one of our prompts."""
    return f"sound:{SOUND_DIR}/{name}"


def prompts_dir() -> Path:
    return Path(str(resources.files("pbx_router").joinpath("prompts")))


@cache
def prompt_texts() -> dict[str, str]:
    """name -> text, from the packaged YAML (what a recorded replacement should say)."""
    raw = yaml.safe_load((prompts_dir() / "prompts.yaml").read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ValueError("prompts.yaml: expected a mapping of prompt name -> text")
    return {k: " ".join(v.split()) for k, v in raw.items()}


def rendered_files(language: str = "en") -> dict[str, Path]:
    """name -> WAV for every rendered prompt of ``language``."""
    return {p.stem: p for p in sorted((prompts_dir() / language).glob("*.wav"))}
