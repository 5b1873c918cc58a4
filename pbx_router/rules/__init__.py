"""Pure domain: YAML routing rules -> validated RuleSet; CallFacts -> one Decision + trace.

Imports nothing from the adapters; only ``watch`` (optional) touches asyncio.
"""

from pbx_router.rules.decision import ConditionTrace, Decision, RuleTrace, Target
from pbx_router.rules.engine import decide
from pbx_router.rules.facts import CallFacts, Override, QueueFacts
from pbx_router.rules.holder import ReloadStatus, RulesHolder
from pbx_router.rules.loader import RulesError, RuleSet, load_rules, parse_rules
from pbx_router.rules.schema import RulesFile


def json_schema() -> dict[str, object]:
    """JSON Schema of the rules file, for admins' editors."""
    schema = RulesFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "pbx-router rules")
    return schema


__all__ = [
    "CallFacts",
    "ConditionTrace",
    "Decision",
    "Override",
    "QueueFacts",
    "ReloadStatus",
    "RuleSet",
    "RuleTrace",
    "RulesError",
    "RulesFile",
    "RulesHolder",
    "Target",
    "decide",
    "json_schema",
    "load_rules",
    "parse_rules",
]
