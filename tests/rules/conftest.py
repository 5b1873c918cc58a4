"""Fixtures for the rules/intents tests: the example clinic rules, times in and out of hours."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbx_router.rules import RuleSet, load_rules

ROOT = Path(__file__).resolve().parents[2]
CLINIC_YAML = ROOT / "examples" / "clinic.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NY = ZoneInfo("America/New_York")
# Tuesday 8 Dec 2026: an ordinary working day.
OPEN = dt.datetime(2026, 12, 8, 10, 30, tzinfo=NY)
CLOSED = dt.datetime(2026, 12, 8, 21, 0, tzinfo=NY)


@pytest.fixture(scope="session")
def clinic() -> RuleSet:
    return load_rules(CLINIC_YAML)
