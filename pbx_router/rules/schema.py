"""The rules file, as pydantic models. ``RulesFile.model_json_schema()`` is what
``pbx-router schema`` prints for admins' editors.

Every model forbids unknown keys, so a typo ("intnet:") is an error with its line, not a
silently ignored condition.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pbx_router.intents.screen import RedFlagsSpec
from pbx_router.intents.spec import IntentSpec, Urgency, _listify
from pbx_router.queues.model import AgentConfig, QueueConfig, names_from_keys

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Action = Literal[
    "queue",
    "transfer",
    "dialplan",
    "voicemail",
    "message",
    "callback",
    "schedule",
    "reprompt",
    "keypad",
    "hangup",
]
# Actions that need no target; every other action names one.
TARGETLESS_ACTIONS = frozenset({"reprompt", "keypad", "hangup"})
_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def _to_str(value: Any) -> Any:
    """YAML turns 100 into an int; dial strings, digits and extensions are text."""
    return (
        str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else value
    )


Text = Annotated[str, BeforeValidator(_to_str)]


def _str_list(value: Any) -> Any:
    value = _listify(value)
    return [_to_str(v) for v in value] if isinstance(value, list) else value


TextList = Annotated[list[str], BeforeValidator(_str_list)]


def parse_hhmm(value: str) -> int:
    """'08:30' -> minutes since midnight; '24:00' allowed as end of day."""
    m = _HHMM.match(value.strip())
    if not m:
        raise ValueError(f"time must be HH:MM, got {value!r}")
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"time out of range: {value!r}")
    return minutes


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r} (use an IANA name like America/New_York)"
        ) from None
    return value


Timezone = Annotated[str, BeforeValidator(_check_tz)]


def _check_range(value: Any) -> Any:
    if not isinstance(value, str) or "-" not in value:
        raise ValueError(f"opening hours must look like '08:00-17:00', got {value!r}")
    start, end = value.split("-", 1)
    if parse_hhmm(start) >= parse_hhmm(end):
        raise ValueError(f"range {value!r} ends before it starts")
    return value


HoursRange = Annotated[str, BeforeValidator(_check_range)]


def _check_time(value: Any) -> Any:
    value = _to_str(value)
    if isinstance(value, str):
        parse_hhmm(value)
    return value


ClockTime = Annotated[str, BeforeValidator(_check_time)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HolidaySpec(_Model):
    country: str = Field(
        description="ISO 3166 country code understood by the `holidays` package, e.g. US."
    )
    subdivision: Text | None = Field(
        default=None, description="State/province code, e.g. NY."
    )

    @model_validator(mode="after")
    def _known(self) -> HolidaySpec:
        import holidays

        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"holidays: unknown country {self.country!r}")
        if (
            self.subdivision is not None
            and self.subdivision not in supported[self.country]
        ):
            raise ValueError(
                f"holidays: unknown subdivision {self.subdivision!r} for {self.country}"
            )
        return self


class Closure(_Model):
    """An explicit closure: one date, a date range, or a weekly slot (e.g. training afternoons)."""

    date: dt.date | None = None
    until: dt.date | None = Field(
        default=None, description="Last closed date (inclusive) of a range."
    )
    weekday: Weekday | None = None
    start: ClockTime = Field(default="00:00", alias="from")
    end: ClockTime = Field(default="24:00", alias="to")
    reason: str = ""

    @model_validator(mode="after")
    def _when(self) -> Closure:
        if (self.date is None) == (self.weekday is None):
            raise ValueError("a closure needs exactly one of 'date' or 'weekday'")
        if self.until is not None and (self.date is None or self.until < self.date):
            raise ValueError("'until' needs a 'date' on or before it")
        if parse_hhmm(self.start) >= parse_hhmm(self.end):
            raise ValueError("closure 'from' must be before 'to'")
        return self


class CalendarSpec(_Model):
    timezone: Timezone
    hours: dict[Weekday, Annotated[list[HoursRange], BeforeValidator(_listify)]] = (
        Field(
            default_factory=dict,
            description="Opening hours per weekday, e.g. mon: ['08:00-12:00', '13:00-17:00'].",
        )
    )
    holidays: HolidaySpec | None = None
    closures: list[Closure] = Field(default_factory=list)


class DialplanSpec(_Model):
    context: Text
    extension: Text = "s"
    priority: int = 1


class VoicemailSpec(_Model):
    context: Text
    extension: Text


class ScheduleSpec(_Model):
    flow: Text = "default"


class CallbackSpec(_Model):
    queue: Text | None = None


class TargetSpec(_Model):
    """Exactly one of the kinds below, in Asterisk terms the call layer can act on."""

    description: str = ""
    queue: Text | None = Field(default=None, description="Daemon-owned queue name.")
    endpoint: Text | None = Field(
        default=None, description="Dial + bridge, e.g. PJSIP/agent1."
    )
    dialplan: DialplanSpec | None = None
    voicemail: VoicemailSpec | None = None
    message: Text | None = Field(
        default=None, description="Play e.g. 'sound:clinic-closed' then hang up."
    )
    schedule: ScheduleSpec | None = None
    callback: CallbackSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `schedule: {}` / `callback: {}` may be written as bare `schedule:`.
        if isinstance(value, dict):
            value = dict(value)
            for key in ("schedule", "callback"):
                if key in value and value[key] is None:
                    value[key] = {}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> TargetSpec:
        kinds = [k for k in TARGET_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a target needs exactly one of: "
                + ", ".join(TARGET_KINDS)
                + f" (got {kinds or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in TARGET_KINDS if getattr(self, k) is not None)


TARGET_KINDS: tuple[str, ...] = (
    "queue",
    "endpoint",
    "dialplan",
    "voicemail",
    "message",
    "schedule",
    "callback",
)
# The action a target implies when the rule does not say.
DEFAULT_ACTION: dict[str, str] = {
    "queue": "queue",
    "endpoint": "transfer",
    "dialplan": "dialplan",
    "voicemail": "voicemail",
    "message": "message",
    "schedule": "schedule",
    "callback": "callback",
}


class QueueCondition(_Model):
    name: Text
    agents_available_at_least: int | None = None
    agents_available_at_most: int | None = None
    callers_waiting_at_least: int | None = None
    callers_waiting_at_most: int | None = None
    longest_wait_s_at_least: float | None = None
    longest_wait_s_at_most: float | None = None


class WindowCondition(_Model):
    """A weekly time window, in a calendar's timezone (or an explicit one)."""

    calendar: Text | None = None
    timezone: Timezone | None = None
    days: Annotated[list[Weekday], BeforeValidator(_listify)] = Field(
        default_factory=lambda: list(WEEKDAYS)
    )
    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")


class CallsWithin(_Model):
    days: float = Field(gt=0)
    at_least: int = Field(default=1, ge=1)


class OverrideCondition(_Model):
    kind: Text
    scope: Text | None = None


class When(_Model):
    """All listed conditions must hold (AND); list values mean "any of"."""

    intent: TextList | None = Field(
        default=None, description="Top intent is any of these (and clears the floor)."
    )
    understood: bool | None = Field(
        default=None, description="Whether the top intent clears the confidence floor."
    )
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    confidence_below: float | None = Field(default=None, ge=0, le=1)
    urgency: Annotated[list[Urgency], BeforeValidator(_listify)] | None = None
    attempt: int | None = Field(
        default=None, ge=1, description="Exactly this listening attempt (1 = first)."
    )
    attempt_at_least: int | None = Field(default=None, ge=1)
    open: Text | None = Field(
        default=None, description="Calendar name that must be open now."
    )
    closed: Text | None = Field(
        default=None, description="Calendar name that must be closed now."
    )
    window: WindowCondition | None = None
    known_patient: bool | None = None
    calls_within: CallsWithin | None = Field(
        default=None, description="Earlier calls from this number."
    )
    repeat_caller_today: bool | None = None
    caller_matches: TextList | None = Field(
        default=None, description="Glob patterns on the caller number."
    )
    caller_in: Text | None = Field(
        default=None, description="Name of a list under `lists:`."
    )
    caller_not_in: Text | None = None
    language: TextList | None = None
    dialled: TextList | None = None
    queue: Annotated[list[QueueCondition], BeforeValidator(_listify)] | None = None
    override: OverrideCondition | None = Field(
        default=None, description="An active staff override."
    )


class Then(_Model):
    action: Action | None = Field(
        default=None, description="Defaults from the target's kind."
    )
    target: Text | None = None
    priority: int = Field(default=5, ge=0, le=10, description="0 = most urgent.")
    message: Text | None = Field(
        default=None,
        description="Sound played before the action, e.g. sound:clinic-911.",
    )
    reason: str | None = Field(
        default=None, description="Human sentence shown in traces."
    )

    @model_validator(mode="after")
    def _target_needed(self) -> Then:
        if self.target is None and self.action not in TARGETLESS_ACTIONS:
            raise ValueError(
                "'then' needs a target unless the action is reprompt, keypad or hangup"
            )
        return self


class Rule(_Model):
    name: Text
    description: str = ""
    when: When = Field(default_factory=When)
    then: Then

    @model_validator(mode="before")
    @classmethod
    def _empty_when(cls, value: Any) -> Any:
        if isinstance(value, dict) and "when" in value and value["when"] is None:
            value = {**value, "when": {}}
        return value


class EmergencySettings(_Model):
    target: Text = Field(description="Human / on-call target every emergency reaches.")
    message: Text | None = Field(
        default=None, description="Instruction played first, e.g. call 911."
    )
    priority: int = Field(default=0, ge=0, le=10)
    chain: TextList | None = Field(
        default=None,
        description="Human targets (queue, endpoint, dialplan) an emergency or crisis caller is passed"
        " along, in order, when the target they were sent to is closed, has nobody logged in, overflows"
        " or does not answer; after the last one, the daemon's dialplan fallback (calls.fallback)."
        " Default: just `target`. Needed when a queue emergencies reach overflows to a callback,"
        " message or voicemail (those are for routine callers only).",
    )

    @property
    def escalation(self) -> list[str]:
        """The chain in force: the configured one, else the emergency target alone."""
        return list(self.chain) if self.chain else [self.target]


class Settings(_Model):
    timezone: Timezone = "UTC"
    confidence_floor: float = Field(default=0.5, ge=0, le=1)
    emergency: EmergencySettings


class RulesFile(_Model):
    """A pbx-router routing rules file."""

    version: Literal[1] = 1
    settings: Settings
    intents: dict[Text, IntentSpec]
    calendars: dict[Text, CalendarSpec] = Field(default_factory=dict)
    targets: dict[Text, TargetSpec]
    lists: dict[Text, TextList] = Field(
        default_factory=dict, description="Number lists, e.g. a blocklist."
    )
    rules: list[Rule] = Field(
        min_length=1,
        description="Ordered; the first rule whose conditions all hold wins.",
    )
    queues: dict[Text, QueueConfig] = Field(
        default_factory=dict,
        description="Daemon-owned queues (holding bridge, music, agents rung by pbx-router). A queue"
        " target not listed here goes to Asterisk's own Queue() in the router-queue context.",
    )
    agents: dict[Text, AgentConfig] = Field(
        default_factory=dict, description="Agent phones of the daemon-owned queues, with their queues and skills.",
    )
    red_flags: RedFlagsSpec = Field(
        default_factory=RedFlagsSpec,
        description="Additions to the built-in emergency screen, which runs on every utterance"
        " before intent ranking and cannot be switched off: extra words per red flag, new red"
        " flags, and which emergency intent each red flag or category goes to.",
    )

    @model_validator(mode="before")
    @classmethod
    def _queue_names_from_keys(cls, value: Any) -> Any:
        return names_from_keys(value)

    @field_validator("intents")
    @classmethod
    def _some_intent(cls, value: dict[str, IntentSpec]) -> dict[str, IntentSpec]:
        if not value:
            raise ValueError("define at least one intent")
        return value
