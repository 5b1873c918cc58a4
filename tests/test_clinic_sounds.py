"""Every message the example clinic's rules play exists as an Asterisk-playable WAV with its text."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
SOUNDS = ROOT / "examples" / "sounds"


def test_every_custom_sound_in_the_clinic_rules_is_rendered_and_has_its_text() -> None:
    used = set(re.findall(r"sound:custom/([a-z0-9-]+)", (ROOT / "examples" / "clinic.yaml").read_text()))
    # And what the dialplan itself plays (the after-hours message, issue 11: it was never shipped,
    # so callers after hours heard no emergency instruction).
    dialplan = set(re.findall(r"Playback\(custom/([a-z0-9-]+)\)", (ROOT / "asterisk_conf" / "extensions.conf").read_text()))
    assert "clinic-after-hours" in dialplan
    used |= dialplan
    texts = yaml.safe_load((SOUNDS / "clinic-prompts.yaml").read_text())
    assert used, "the clinic rules play their own messages"
    assert used <= set(texts), f"no text for {sorted(used - set(texts))}"
    for name in used:
        with wave.open(str(SOUNDS / "en" / "custom" / f"{name}.wav")) as w:
            # Asterisk's "wav" format: 8 kHz, mono, 16-bit signed linear.
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), name
            assert 0.5 < w.getnframes() / 8000 < 30, name
