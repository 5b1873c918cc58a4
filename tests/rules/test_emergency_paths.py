"""``pbx-router check`` rejects rules whose emergency paths can end in a callback, message or
voicemail: an emergency rule whose queue overflows there (without an emergency chain that takes
emergency callers elsewhere), or a chain entry that is not a person."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pbx_router.cli import main

from .conftest import CLINIC_YAML

POS = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")

RULES = """\
version: 1
settings:
  timezone: UTC
  emergency: {target: oncall}
intents:
  emergency: {urgency: emergency, keywords: [chest pain]}
  question: {keywords: [question]}
targets:
  oncall: {endpoint: PJSIP/agent3}
  nurse: {queue: nurse}
  desk: {dialplan: {context: clinic-frontdesk}}
  vm_nurse: {voicemail: {context: clinic-voicemail, extension: nurse}}
rules:
  - name: emergency
    when: {intent: emergency}
    then: {target: nurse, priority: 0}
  - name: everyone
    then: {target: nurse}
queues:
  nurse:
    max_wait_s: 300
    overflow_on_time: {voicemail: {context: clinic-voicemail, extension: nurse}}
agents:
  agent2: {queues: [nurse]}
"""


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, list[str]]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    code = main(["check", str(path)])
    out, _ = capsys.readouterr()
    # Errors only: warnings (an unused target...) are not what these tests are about.
    return code, [line for line in out.splitlines() if line.strip() and ": warning: " not in line]


def test_an_emergency_queue_overflowing_to_voicemail_is_rejected_at_the_overflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(tmp_path, capsys, RULES)
    assert code == 1
    assert len(lines) == 1, lines
    m = POS.match(lines[0])
    assert m is not None
    # At the queue's `overflow_on_time:`: where the admin has to look.
    assert int(m["line"]) == RULES.splitlines().index("    overflow_on_time: {voicemail: {context: clinic-voicemail,"
                                                       " extension: nurse}}") + 1
    assert "queues.nurse.overflow_on_time" in m["msg"] and "an emergency path ends in a voicemail" in m["msg"]
    assert "rules[0] 'emergency'" in m["msg"] and "settings.emergency.chain" in m["msg"]


def test_the_same_through_a_named_callback_target_and_an_overflow_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (RULES.replace("  vm_nurse:", "  call_back: {callback: {queue: nurse}}\n  vm_nurse:")
            .replace("overflow_on_time: {voicemail: {context: clinic-voicemail, extension: nurse}}",
                     "overflow_on_time: {queue: desk}\n  desk:\n    max_len: 2\n"
                     "    overflow_on_length: {target: call_back}")
            .replace("agent2: {queues: [nurse]}", "agent2: {queues: [nurse, desk]}"))
    code, lines = check(tmp_path, capsys, text)
    assert code == 1
    assert any("queues.desk.overflow_on_length" in line and "callback target 'call_back'" in line
               and "which overflows to queue 'desk'" in line for line in lines), lines


def test_an_emergency_chain_takes_emergency_callers_past_the_overflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RULES.replace("emergency: {target: oncall}", "emergency: {target: oncall, chain: [oncall, desk]}")
    code, lines = check(tmp_path, capsys, text)
    assert code == 0, lines
    assert lines[-1].endswith("warning(s), version " + lines[-1].rsplit(" ", 1)[-1])


def test_a_chain_entry_that_is_not_a_person_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RULES.replace("emergency: {target: oncall}",
                         "emergency: {target: oncall, chain: [oncall, vm_nurse, nobody]}")
    code, lines = check(tmp_path, capsys, text)
    assert code == 1
    assert any("settings.emergency.chain[1]" in line and "'vm_nurse' is a voicemail target" in line
               for line in lines), lines
    assert any("settings.emergency.chain[2]" in line and "undefined target 'nobody'" in line for line in lines)


def test_the_example_clinic_names_its_chain_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(CLINIC_YAML)]) == 0
    assert "OK" in capsys.readouterr().out


def test_the_example_clinic_without_its_chain_is_rejected_for_the_nurse_queue_callback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CLINIC_YAML.read_text().replace("    chain: [oncall_doctor, oncall_nurse, frontdesk]\n", "")
    code, lines = check(tmp_path, capsys, text)
    assert code == 1
    assert len(lines) == 1 and "queues.nurse.overflow_on_time" in lines[0]
    assert "callback target 'callback_nurse'" in lines[0] and "rules[0] 'emergency-open'" in lines[0]
