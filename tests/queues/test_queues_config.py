"""The queues/agents sections: what an admin writes, and the errors they get back."""

from __future__ import annotations

from pathlib import Path

import pytest

import pbx_router.queues as queues_pkg
from pbx_router.queues import QueuesConfigError, parse_queues_section

EXAMPLE = Path(queues_pkg.__file__).parent / "example.yaml"


def errors_of(text: str) -> list[str]:
    with pytest.raises(QueuesConfigError) as info:
        parse_queues_section(text, "clinic.yaml")
    return info.value.errors


def test_the_shipped_example_loads_with_names_from_keys_and_default_endpoints() -> None:
    section = parse_queues_section(EXAMPLE.read_bytes(), str(EXAMPLE))
    assert set(section.queues) == {"frontdesk", "nurse", "pharmacy", "scheduling", "billing"}
    assert section.queues["frontdesk"].bridge_id == "queue-frontdesk"
    assert section.queues["nurse"].strategy == "skills"
    assert section.queues["scheduling"].overflow_on_time is not None
    assert section.queues["scheduling"].overflow_on_time.kind == "queue"
    assert section.agents["agent4"].endpoint == "PJSIP/agent4"
    assert [a.endpoint for a in section.agents_of("nurse")] == ["PJSIP/agent2", "PJSIP/agent3"]


def test_other_sections_of_the_rules_file_are_left_to_the_rules_loader() -> None:
    text = "version: 1\nsettings: {timezone: UTC}\nqueues:\n  q: {}\nagents:\n  a1: {queues: [q]}\n"
    section = parse_queues_section(text)
    assert section.queues["q"].strategy == "ring_all"
    assert section.agents["a1"].presence == "logged_in"


def test_an_agent_in_an_unknown_queue_is_reported_with_its_line() -> None:
    errs = errors_of("queues:\n  q: {}\nagents:\n  a1:\n    queues: [qq]\n")
    assert errs == ["clinic.yaml:4:3: agents.a1: unknown queue 'qq'"], errs


def test_a_maximum_without_an_overflow_is_refused_at_the_queue_line() -> None:
    errs = errors_of("queues:\n  q:\n    max_wait_s: 60\n")
    assert len(errs) == 1
    assert errs[0].startswith("clinic.yaml:2:") and "max_wait_s needs overflow_on_time" in errs[0]
    assert "max_len needs overflow_on_length" in errors_of("queues:\n  q: {max_len: 3}\n")[0]


def test_a_typo_in_a_key_is_an_error_not_a_silent_default() -> None:
    errs = errors_of("queues:\n  q:\n    ring_timout_s: 5\n")
    assert any(e.startswith("clinic.yaml:3:") and "ring_timout_s" in e for e in errs), errs


def test_unknown_strategy_and_bad_numbers_are_refused() -> None:
    assert any("strategy" in e for e in errors_of("queues:\n  q: {strategy: random}\n"))
    assert any("ring_timeout_s" in e for e in errors_of("queues:\n  q: {ring_timeout_s: 0}\n"))
    assert any("skill levels" in e for e in errors_of("queues:\n  q: {}\nagents:\n  a: {queues: [q], skills: {x: -1}}\n"))


def test_overflow_targets_need_exactly_one_kind() -> None:
    errs = errors_of("queues:\n  q: {max_wait_s: 5, overflow_on_time: {queue: r, message: 'sound:x'}}\n  r: {}\n")
    assert any("exactly one of" in e for e in errs), errs
    section = parse_queues_section("queues:\n  q: {max_wait_s: 5, overflow_on_time: {callback: }}\n")
    assert section.queues["q"].overflow_on_time is not None
    assert section.queues["q"].overflow_on_time.kind == "callback"


def test_queues_overflowing_into_each_other_on_time_would_bounce_callers_and_are_refused() -> None:
    text = (
        "queues:\n"
        "  a: {max_wait_s: 5, overflow_on_time: {queue: b}}\n"
        "  b: {max_wait_s: 5, overflow_on_time: {queue: a}}\n"
    )
    errs = errors_of(text)
    assert any("in a circle" in e for e in errs), errs
    assert any("into itself" in e for e in errors_of("queues:\n  a: {max_wait_s: 5, overflow_on_time: {queue: a}}\n"))


def test_two_agents_on_one_phone_and_bad_endpoint_names_are_refused() -> None:
    dup = "queues:\n  q: {}\nagents:\n  x: {endpoint: PJSIP/a, queues: [q]}\n  y: {endpoint: PJSIP/a, queues: [q]}\n"
    assert any("already used" in e for e in errors_of(dup))
    assert any("endpoint" in e for e in errors_of("queues:\n  q: {}\nagents:\n  x: {endpoint: 'agent 1', queues: [q]}\n"))
    assert any("name" in e for e in errors_of("queues:\n  Front Desk: {}\n"))


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe not utf8", "queues: [unclosed", "- just\n- a list\n", "queues: 5\n", "queues:\n  q: 7\n"],
)
def test_malformed_input_gets_a_clear_error_never_a_crash(raw: bytes | str) -> None:
    with pytest.raises(QueuesConfigError) as info:
        parse_queues_section(raw, "bad.yaml")
    assert info.value.errors and all(e.startswith("bad.yaml:") for e in info.value.errors)


def test_an_empty_document_is_an_empty_section() -> None:
    section = parse_queues_section("")
    assert section.queues == {} and section.agents == {}
