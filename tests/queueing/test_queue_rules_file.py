"""The rules file's queues:/agents: sections are checked against each other and the targets."""

from __future__ import annotations

import pytest
import yaml

from pbx_router.rules import RulesError, parse_rules

from queueing.conftest import agents_for, rules_yaml


def test_clinic_example_has_queues_for_its_queue_targets_and_agents_on_real_phones() -> None:
    from pathlib import Path

    rules = parse_rules(Path("examples/clinic.yaml").read_bytes(), "clinic.yaml")
    section = rules.queues_section
    assert section is not None
    queue_targets = {str(t.params["queue"]) for t in rules.targets.values() if t.kind == "queue"}
    assert queue_targets <= set(section.queues)
    assert {a.endpoint for a in section.agents.values()} == {"PJSIP/agent1", "PJSIP/agent2", "PJSIP/agent3"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["agents"]["agent1"].update(queues=["nope"]), "agents.agent1: unknown queue 'nope'"),
        (lambda d: d["queues"]["q1"].update(max_wait_s=5, overflow_on_time={"target": "missing"}),
         "queues.q1.overflow_on_time.target: undefined target 'missing'"),
        (lambda d: d["queues"]["q1"].update(max_len=2), "max_len needs overflow_on_length"),
    ],
)
def test_broken_queue_sections_are_reported_with_their_place(change: object, message: str) -> None:
    doc = yaml.safe_load(rules_yaml({"q1": {}}, agents_for(1)))
    change(doc)  # type: ignore[operator]
    with pytest.raises(RulesError) as info:
        parse_rules(yaml.safe_dump(doc, sort_keys=False), "r.yaml")
    assert any(message in e and e.startswith("r.yaml:") for e in info.value.errors), info.value.errors
