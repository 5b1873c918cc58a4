"""The admin's command line: check, simulate (text, batch, audio), schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pbx_router.cli import main

from .conftest import CLINIC_YAML, ROOT

POS = re.compile(r"^.+:\d+:\d+: .+$")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_valid_clinic(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(CLINIC_YAML))
    assert code == 0
    assert out.strip().startswith(f"{CLINIC_YAML}: OK (") and "warning:" not in out


def test_check_invalid_file_lists_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CLINIC_YAML.read_text()
        .replace(
            "then: {target: pharmacy, priority: 5}",
            "then: {target: pharmcy, priority: 5}",
        )
        .replace('mon: "08:00-17:00"', 'mon: "8am-5pm"'),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "check", str(bad))
    lines = out.strip().splitlines()
    assert code == 1
    assert len(lines) == 2 and all(
        POS.match(line) and line.startswith(str(bad)) for line in lines
    )
    assert "undefined target 'pharmcy'" in out and "time must be HH:MM" in out


def test_check_warnings_and_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CLINIC_YAML.read_text().replace(
        "  - name: fallback\n",
        "  - name: refill-late\n    when: {intent: prescription_refill}\n    then: {target: pharmacy}\n  - name: fallback\n",
    )
    path = tmp_path / "warn.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and "warning: rule 'refill-late' is unreachable" in out
    code, _, _ = run(capsys, "check", "--strict", str(path))
    assert code == 1


def test_simulate_json_has_the_documented_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--text",
        "i mean carried tell my prescription",
        "--at",
        "2026-12-08T10:00:00-05:00",
        "--caller",
        "+15551234567",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert {
        "transcript",
        "intent",
        "confidence",
        "intents",
        "action",
        "target",
        "rule",
        "trace",
    } <= set(result)
    assert (result["intent"], result["action"], result["target"], result["rule"]) == (
        "prescription_refill",
        "queue",
        "pharmacy",
        "refill-open",
    )
    assert result["intents"][0]["intent"] == "prescription_refill"
    assert (
        result["trace"][-1]["matched"] and result["trace"][-1]["rule"] == "refill-open"
    )


def test_simulate_after_hours_and_queue_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--text",
        "I need a refill",
        "--at",
        "2026-12-24T19:30:00-05:00",
        "--json",
    )
    assert code == 0 and json.loads(out)["target"] == "vm_pharmacy"
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--text",
        "I need to talk to a nurse",
        "--at",
        "2026-12-08T10:00:00-05:00",
        "--queue-state",
        "nurse.agents_available=0",
        "nurse.callers_waiting=6",
        "--json",
    )
    assert code == 0 and json.loads(out)["rule"] == "nurse-overflow"


def test_simulate_human_output_shows_transcript_intents_decision_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--text",
        "my husband can't breathe",
        "--at",
        "2026-12-08T23:00:00-05:00",
    )
    assert code == 0
    for needle in (
        "transcript:",
        "intents:",
        "1. emergency",
        "decision:   transfer -> oncall_doctor",
        "message:",
        "911",
        "trace:",
        "MATCH",
    ):
        assert needle in out


def test_simulate_batch_prints_one_json_object_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "phrases.txt"
    batch.write_text(
        "# regression list\nI need a refill\n\nbananas are yellow\nmy chest hurts\n",
        encoding="utf-8",
    )
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--batch",
        str(batch),
        "--at",
        "2026-12-08T10:00:00-05:00",
    )
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0
    assert [(r["intent"], r["action"]) for r in rows] == [
        ("prescription_refill", "queue"),
        (None, "reprompt"),
        ("emergency", "queue"),
    ]
    assert all(
        {"transcript", "confidence", "intents", "target", "rule", "trace"} <= set(r)
        for r in rows
    )


def test_simulate_audio_failures_exit_1_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--audio",
        str(tmp_path / "missing.wav"),
    )
    assert code == 1 and "not found" in err
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF....WAVEfmt ")
    monkeypatch.setitem(
        sys.modules, "pbx_router.speech.transcribe", None
    )  # import fails
    code, _, err = run(capsys, "simulate", "-r", str(CLINIC_YAML), "--audio", str(wav))
    assert code == 1 and "speech recognition is not available" in err


def test_simulate_audio_uses_the_transcriber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    fake = types.ModuleType("pbx_router.speech.transcribe")

    class Result:
        text = "refill my pray scription"
        confidence = 0.61

    calls: list[tuple[Path, str | None]] = []
    fake.transcribe_file = lambda path, engine=None: (
        calls.append((path, engine)) or Result()
    )  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pbx_router.speech.transcribe", fake)
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF")
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--audio",
        str(wav),
        "--engine",
        "pocketsphinx",
        "--at",
        "2026-12-08T10:00:00-05:00",
        "--json",
    )
    result = json.loads(out)
    assert code == 0 and calls == [(wav, "pocketsphinx")]
    assert (result["transcript"], result["asr_confidence"], result["target"]) == (
        "refill my pray scription",
        0.61,
        "pharmacy",
    )


@pytest.mark.parametrize(
    "bad",
    [
        ["--queue-state", "pharmacy=3"],
        ["--queue-state", "pharmacy.agents=1"],
        ["--at", "tomorrow"],
    ],
)
def test_simulate_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    code, _, err = run(capsys, "simulate", "-r", str(CLINIC_YAML), "--text", "hi", *bad)
    assert code == 2 and "simulate:" in err


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and "rules" in schema["properties"] and "$defs" in schema


def test_installed_entry_point_checks_the_clinic() -> None:
    exe = ROOT / ".venv" / "bin" / "pbx-router"
    proc = subprocess.run(
        [str(exe), "check", str(CLINIC_YAML)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


AUDIO = ROOT / "tests" / "fixtures" / "audio"


def test_simulate_real_recordings_through_the_recogniser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Recordings the speech helper made for the clinic: transcribed locally, then routed."""
    pytest.importorskip("pbx_router.speech.transcribe")
    wavs = {
        "refill_01.wav": "pharmacy",
        "emergency_02.wav": "nurse",
        "appt_cancel_02.wav": "cancel_appointment",
    }
    if not all((AUDIO / w).exists() for w in wavs):
        pytest.skip("fixture audio not present")
    batch = tmp_path / "wavs.txt"
    batch.write_text("\n".join(str(AUDIO / w) for w in wavs) + "\n", encoding="utf-8")
    code, out, _ = run(
        capsys,
        "simulate",
        "-r",
        str(CLINIC_YAML),
        "--batch",
        str(batch),
        "--at",
        "2026-12-08T10:00:00-05:00",
    )
    rows = [
        json.loads(line) for line in out.strip().splitlines()
    ]  # stdout is JSON only, no log lines
    assert code == 0, rows
    assert [r["target"] for r in rows] == list(wavs.values()), [
        r["transcript"] for r in rows
    ]
