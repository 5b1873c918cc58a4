"""Loading a rules file: every error at once as FILE:LINE:COL, warnings that help, and the
YAML traps an admin would otherwise fall into."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from pbx_router.rules import RulesError, json_schema, load_rules, parse_rules

from .conftest import CLINIC_YAML

POS = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")

GOOD = textwrap.dedent(
    """\
    version: 1
    settings:
      timezone: America/New_York
      emergency: {target: oncall}
    calendars:
      office:
        timezone: America/New_York
        hours: {mon: 08:30-17:00}
    intents:
      refill: {keywords: [refill], digit: 1}
      billing: {keywords: [bill]}
    lists:
      blocked: [+15550001111]
    targets:
      oncall: {endpoint: PJSIP/agent3}
      pharmacy: {queue: pharmacy}
      desk: {queue: frontdesk}
    rules:
      - name: refill
        when: {intent: refill, open: office}
        then: {target: pharmacy}
      - name: fallback
        then: {target: desk}
    """
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "r.yaml")
    for line in exc.value.errors:
        assert POS.match(line), line
    return exc.value.errors


def test_good_file_loads_and_yaml_11_traps_are_avoided() -> None:
    rs = parse_rules(GOOD, "r.yaml")
    assert rs.spec.calendars["office"].hours["mon"] == ["08:30-17:00"]
    assert rs.spec.lists["blocked"] == ["+15550001111"]  # not the integer 15550001111
    assert rs.intents["refill"].digit == "1"
    assert rs.warnings == [
        "r.yaml:9:1: warning: no intent has 'urgency: emergency': the emergency safety net can never trigger",
        "r.yaml:11:3: warning: intent 'billing' is not named by any rule; those calls reach the generic rules/fallback",
    ]


def test_every_error_is_reported_at_once_with_its_position() -> None:
    bad = (
        GOOD.replace("{intent: refill, open: office}", "{intnet: refill, open: office}")
        .replace("hours: {mon: 08:30-17:00}", "hours: {mon: 18:30-17:00}")
        .replace("then: {target: desk}", "then: {target: dsk}")
    )
    errs = errors_of(bad)
    assert any(":8:" in e and "ends before it starts" in e for e in errs)
    assert any(":20:12:" in e and "intnet" in e and "Extra inputs" in e for e in errs)
    assert any(":23:" in e and "undefined target 'dsk'" in e for e in errs)
    assert len(errs) == 3


def test_cross_reference_errors() -> None:
    bad = (
        GOOD.replace(
            "when: {intent: refill, open: office}",
            "when: {intent: [refill, refil], open: offfice}",
        )
        .replace("billing: {keywords: [bill]}", "billing: {keywords: [bill], digit: 1}")
        .replace("emergency: {target: oncall}", "emergency: {target: pharmacy}")
    )
    text = "\n".join(errors_of(bad))
    assert "undefined intent 'refil'" in text
    assert "undefined calendar 'offfice'" in text
    assert "keypad digit 1 already used" in text
    assert "must reach a human" not in text  # a queue is a human
    text2 = "\n".join(
        errors_of(
            GOOD.replace(
                "pharmacy: {queue: pharmacy}", "pharmacy: {message: 'sound:x'}"
            ).replace("emergency: {target: oncall}", "emergency: {target: pharmacy}")
        )
    )
    assert "must reach a human" in text2


def test_fallback_rule_is_mandatory() -> None:
    bad = GOOD.replace(
        "  - name: fallback\n    then:",
        "  - name: fallback\n    when: {intent: billing}\n    then:",
    )
    assert any("fallback" in e for e in errors_of(bad))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: [1, 2\nb: c\n", "YAML syntax"),
        ("", "must be a mapping"),
        ("- just\n- a list\n", "must be a mapping"),
        ("settings: {}\nsettings: {}\n", "duplicate key"),
        (GOOD.replace("digit: 1}", "digit: 1, regex: ['(unclosed']}"), "invalid regex"),
        (
            GOOD.replace(
                "pharmacy: {queue: pharmacy}",
                "pharmacy: {queue: pharmacy, endpoint: PJSIP/x}",
            ),
            "exactly one of",
        ),
        (
            GOOD.replace(
                "then: {target: pharmacy}", "then: {target: pharmacy, action: transfer}"
            ),
            "does not fit",
        ),
        (
            GOOD.replace(
                "keywords: [bill]", "keywords: [one two three four five six seven]"
            ),
            "at most 6 words",
        ),
        (
            GOOD.replace(
                "timezone: America/New_York\n  emergency",
                "timezone: Mars/Olympus\n  emergency",
            ),
            "unknown timezone",
        ),
    ],
)
def test_malformed_files_give_clear_positioned_errors(text: str, needle: str) -> None:
    assert any(needle in e for e in errors_of(text))


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    assert any("not allowed" in e for e in errors_of("a: \x00\n"))
    raw = tmp_path / "bin.yaml"
    raw.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RulesError) as exc:
        load_rules(raw)
    assert "UTF-8" in exc.value.errors[0] and exc.value.errors[0].startswith(
        f"{raw}:1:1:"
    )
    with pytest.raises(RulesError) as exc2:
        load_rules(tmp_path / "missing.yaml")
    assert "cannot read" in exc2.value.errors[0]


def test_unreachable_and_unused_warnings() -> None:
    text = GOOD.replace(
        "  - name: fallback",
        "  - name: refill-again\n    when: {intent: refill, open: office, attempt: 2}\n    then: {target: pharmacy}\n"
        "  - name: fallback",
    ).replace(
        "  desk: {queue: frontdesk}",
        "  desk: {queue: frontdesk}\n  spare: {queue: spare}",
    )
    rs = parse_rules(text, "r.yaml")
    joined = "\n".join(rs.warnings)
    assert "rule 'refill-again' is unreachable: earlier rule 'refill'" in joined
    assert "target 'spare' is never used" in joined


def test_clinic_example_is_clean_and_complete() -> None:
    rs = load_rules(CLINIC_YAML)
    assert rs.warnings == []
    required = {
        "prescription_refill",
        "appointment_new",
        "appointment_change",
        "appointment_cancel",
        "speak_to_nurse",
        "speak_to_doctor",
        "test_results",
        "billing",
        "referral",
        "emergency",
        "operator",
    }
    assert required <= set(rs.intents)
    assert rs.rules[-1].unconditional


def test_json_schema_describes_the_file() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert {"settings", "intents", "targets", "rules"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert "from" in json.dumps(schema["$defs"]["Closure"])
