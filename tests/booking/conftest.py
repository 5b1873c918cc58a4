"""Booking flow fixtures: the example clinic loaded into the test's database, an emulator that knows
the core sounds a slot is read with and our rendered prompts, and helpers to follow a call."""

from __future__ import annotations

import asyncio
import datetime as dt
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pbx_router.calls import booking_prompts
from pbx_router.scheduling.data import import_clinic_data, load_clinic_file
from pbx_router.store import Store
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

ROOT = Path(__file__).parents[2]
CLINIC_DATA = ROOT / "examples" / "clinic-data.yaml"
RULES = ROOT / "examples" / "clinic.yaml"
NY = dt.timezone(dt.timedelta(hours=-5))
TUESDAY_10AM = dt.datetime(2026, 12, 1, 10, 0, tzinfo=NY)

# Patients of examples/clinic-patients.csv.
SOFIA = {"record": "MRN00004", "number": "+15552220104", "dob_keys": "02032004"}
AISHA = {"record": "MRN00001", "number": "+15557870101", "dob_keys": "03052006"}
UNKNOWN_NUMBER = "+15550009999"



def rules_without_daemon_queues(out: Path) -> Path:
    """The example rules minus their ``queues:`` / ``agents:`` sections: the scheduling team is then the dialplan's
    ``router-queue,scheduling`` (what these tests observe); daemon-owned queues are tested elsewhere."""
    lines = RULES.read_text(encoding="utf-8").splitlines(keepends=True)
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith(("queues:", "agents:")):
            skipping = True
            continue
        if skipping and line[:1].isalpha():
            skipping = False
        if not skipping:
            kept.append(line)
    out.write_text("".join(kept), encoding="utf-8")
    return out


@pytest.fixture
def keypad_only(tmp_path: Path) -> str:
    rules = rules_without_daemon_queues(tmp_path / "clinic.yaml")
    return f"rules: {rules}\nspeech: {{enabled: false, no_input_ms: 1500}}\n"


@pytest.fixture
def listening(tmp_path: Path) -> str:
    rules = rules_without_daemon_queues(tmp_path / "clinic.yaml")
    return (f"rules: {rules}\nspeech: {{workers: 1, expected_sessions: 2, no_input_ms: 2500}}\n"
            "media: {rtp_port_min: 41100, rtp_port_max: 41199}\n")

# Core sounds a slot read-out uses (durations close to core-sounds-en); digits/0-19 and tens are
# already known to the emulator.
SLOT_SOUNDS: dict[str, float] = {
    **{f"digits/day-{n}": 0.6 for n in range(7)},
    **{f"digits/mon-{n}": 0.6 for n in range(12)},
    **{f"digits/h-{n}": 0.6 for n in range(1, 31)},
    "digits/at": 0.3, "digits/oclock": 0.5, "digits/a-m": 0.5, "digits/p-m": 0.5, "digits/oh": 0.4,
}


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture
def booking_pbx(pbx: AsteriskEmulator) -> AsteriskEmulator:
    pbx.sounds.update(SLOT_SOUNDS)
    # Our prompts last as long as the rendered files do.
    for name, path in booking_prompts.rendered_files().items():
        pbx.sounds[f"{booking_prompts.SOUND_DIR}/{name}"] = wav_seconds(path)
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    return pbx


@pytest.fixture
def keypad_pbx(booking_pbx: AsteriskEmulator) -> AsteriskEmulator:
    """Short prompts: keypad callers' tests do not depend on how long a prompt speaks, only on
    what is played in which order (the voice test keeps the real lengths)."""
    for name in list(booking_pbx.sounds):
        if name.startswith(f"{booking_prompts.SOUND_DIR}/"):
            booking_pbx.sounds[name] = 0.6
        elif name in SLOT_SOUNDS or name.startswith("digits/"):
            booking_pbx.sounds[name] = 0.1
    return booking_pbx


@pytest.fixture
async def clinic_db(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """The test's database with the example clinic loaded (before the daemon starts)."""
    data = await asyncio.to_thread(load_clinic_file, CLINIC_DATA)
    store = await Store.open(database_url, tmp_path / "loader")
    try:
        await import_clinic_data(store.pool, data)
    finally:
        await store.close()
    yield database_url


async def start_booking_daemon(start_daemon: Any, config: str, at: dt.datetime) -> Any:
    daemon = await start_daemon(config)
    daemon.app.brain.clock = lambda: at
    assert daemon.app.brain.booking is not None, "pbx_router.calls.booking.build() gave no service"
    return daemon


def played(pbx: AsteriskEmulator, channel_id: str) -> list[list[str]]:
    """Every play request for the caller, as its media list (in order)."""
    out: list[list[str]] = []
    for r in pbx.requests:
        if r.method == "POST" and r.path.startswith(f"/ari/channels/{channel_id}/play") and r.status < 300:
            media = r.query.get("media", "")
            out.append(media.split(",") if isinstance(media, str) else list(media))
    return out


async def press(call: Any, keys: str) -> None:
    """The caller types ``keys`` at keypad speed. Real presses are >= 100 ms apart; sent in the same
    millisecond, two presses of one key would be byte-identical events, which the daemon (rightly,
    for real Asterisk) drops as duplicates."""
    for n, key in enumerate(keys):
        if n:
            await asyncio.sleep(KEY_GAP)
        await call.send_dtmf(key)


KEY_GAP = 0.12


def prompt(name: str) -> str:
    return booking_prompts.sound(name)


async def prompt_started(pbx: AsteriskEmulator, call: Any, name: str, count: int = 1, timeout: float = 30) -> None:
    """Wait until the ``count``-th play request that starts with our prompt ``name``."""
    uri = prompt(name)

    def seen() -> bool:
        if call.fate != "in_stasis":
            raise AssertionError(f"call ended ({call.fate}, {call.continued_to}) before {name} #{count}")
        return sum(1 for media in played(pbx, call.channel_id) if media and media[0] == uri) >= count

    await eventually(seen, timeout=timeout, what=f"prompt {name} #{count}")


async def query(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def call_record(db_url: str, channel_id: str) -> Any:
    rows = await query(db_url, "SELECT * FROM calls WHERE channel_id = $1 AND ended_at IS NOT NULL", channel_id)
    return rows[0] if rows else None


def extra_of(row: Any) -> dict[str, Any]:
    import json

    extra = row["extra"]
    return json.loads(extra) if isinstance(extra, str) else dict(extra)


async def patient_id(db_url: str, record_number: str) -> int:
    rows = await query(db_url, "SELECT id FROM patients WHERE record_number = $1", record_number)
    return int(rows[0]["id"])


Poll = Callable[[], Any]
