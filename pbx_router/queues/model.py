"""Queue and agent configuration: the ``queues:`` and ``agents:`` sections of the rules file.

Plain pydantic models (unknown keys are errors, so a typo is reported with its line) and a loader
that reads those two sections out of a YAML document and reports ``FILE:LINE:COL: message``.

Conventions the rest of the package relies on:

* ``priority`` numbers: **lower is more urgent / preferred**, as in the rules file (an emergency
  gets priority 1) and Asterisk's member penalty.
* Times are seconds (floats). Names of queues are used in Asterisk ids (``queue-<name>``), so they
  are restricted to ``[a-z0-9_-]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# rules.yamlpos is imported inside parse_queues_section: the rules file schema embeds these
# models, so importing the rules package from here at module level would be circular.

StrategyName = Literal["ring_all", "longest_idle", "round_robin", "fewest_calls", "skills"]
Presence = Literal["logged_in", "paused", "logged_out"]
PRESENCES: tuple[str, ...] = ("logged_in", "paused", "logged_out")
QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Asterisk device names look like TECH/resource; ARI wants them that way in /deviceStates.
ENDPOINT_PATTERN = r"^[A-Za-z][A-Za-z0-9]*/[^\s/]+$"
MAX_SECTION_BYTES = 8 * 1024 * 1024
_PROBLEM_SEPARATOR = "; "


def _to_str(value: Any) -> Any:
    # YAML reads `extension: 100` as an int; extensions and names are text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_to_str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VoicemailBox(_Model):
    context: Text
    extension: Text


class CallbackRequest(_Model):
    queue: Text | None = Field(default=None, description="Staff list the request lands in; default: this queue.")


OVERFLOW_KINDS: tuple[str, ...] = ("queue", "voicemail", "callback", "message", "target")


class OverflowSpec(_Model):
    """Where a caller goes when a queue cannot keep them: exactly one kind.

    ``target`` names an entry of the rules file's ``targets:`` (the call layer resolves it), which
    is also what staff redirect overrides produce.
    """

    queue: Text | None = Field(default=None, description="Another daemon-owned queue.")
    voicemail: VoicemailBox | None = None
    callback: CallbackRequest | None = None
    message: Text | None = Field(
        default=None, description="Media URI played before hanging up, e.g. sound:custom/busy."
    )
    target: Text | None = Field(default=None, description="A named target from the rules file.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `callback:` with nothing after it means "a callback request for this queue".
        if isinstance(value, dict) and "callback" in value and value["callback"] is None:
            value = {**value, "callback": {}}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> OverflowSpec:
        kinds = [k for k in OVERFLOW_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "an overflow needs exactly one of: " + ", ".join(OVERFLOW_KINDS) + f" (got {kinds or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in OVERFLOW_KINDS if getattr(self, k) is not None)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class QueueConfig(_Model):
    name: str = Field(pattern=QUEUE_NAME_PATTERN)
    description: str = ""
    moh_class: Text = Field(default="default", description="Asterisk musiconhold class for the holding bridge.")
    strategy: StrategyName = "ring_all"
    ring_timeout_s: float = Field(default=15.0, gt=0, le=600)
    retry_s: float = Field(
        default=5.0, ge=0, le=600,
        description="Pause after every agent was tried without an answer; also how long an agent whose leg "
        "failed is skipped.",
    )
    wrapup_s: float = Field(default=0.0, ge=0, le=3600)
    max_wait_s: float | None = Field(default=None, gt=0, description="Longest a caller waits before overflow_on_time.")
    max_len: int | None = Field(
        default=None, ge=0, description="Callers waiting at most; the next goes to overflow_on_length."
    )
    overflow_on_time: OverflowSpec | None = None
    overflow_on_length: OverflowSpec | None = None
    leave_when_empty: bool = Field(
        default=False,
        description="Overflow (on_time target) at once when no agent of this queue is logged in and reachable.",
    )
    announce_every_s: float | None = Field(
        default=60.0, gt=0, description="Position/hold-time announcements; null = never."
    )
    announce_position: bool = True
    announce_holdtime: bool = True
    service_level_s: float = Field(default=30.0, gt=0)
    required_skills: dict[Text, int] = Field(
        default_factory=dict,
        description="Skills every caller of this queue needs (skills strategy), name: minimum level.",
    )
    default_handle_s: float = Field(
        default=180.0, gt=0, description="Handle time assumed for wait estimates until calls have been measured.",
    )

    @model_validator(mode="after")
    def _overflows(self) -> QueueConfig:
        if self.max_wait_s is not None and self.overflow_on_time is None:
            raise ValueError("max_wait_s needs overflow_on_time (where does the caller go?)")
        if self.leave_when_empty and self.overflow_on_time is None:
            raise ValueError("leave_when_empty needs overflow_on_time")
        if self.max_len is not None and self.overflow_on_length is None:
            raise ValueError("max_len needs overflow_on_length")
        for spec in (self.overflow_on_time, self.overflow_on_length):
            if spec is not None and spec.queue == self.name:
                raise ValueError(f"queue {self.name!r} cannot overflow into itself")
        return self

    @property
    def bridge_id(self) -> str:
        """The holding bridge's fixed id, so a restarted daemon finds its callers again."""
        return f"queue-{self.name}"


class AgentConfig(_Model):
    endpoint: str = Field(pattern=ENDPOINT_PATTERN, description="Dialable device, e.g. PJSIP/agent1.")
    name: str = ""
    queues: list[Text] = Field(min_length=1)
    skills: dict[Text, int] = Field(default_factory=dict, description="skill: level (higher is better).")
    priority: int = Field(default=0, ge=0, description="Lower is rung first (like Asterisk's penalty).")
    presence: Presence = Field(default="logged_in", description="Presence at first start (staff change it later).")

    @field_validator("skills")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [k for k, v in value.items() if v < 0]
        if bad:
            raise ValueError(f"skill levels must be >= 0: {bad}")
        return value


def names_from_keys(value: Any) -> Any:
    """``queues: {frontdesk: {...}}`` reads better than repeating the name: copy key -> name (and
    agent key -> ``PJSIP/<key>`` endpoint). Used by this section and by the rules file."""
    if isinstance(value, dict):
        value = dict(value)
        queues = value.get("queues")
        if isinstance(queues, dict):
            value["queues"] = {
                k: ({"name": str(k), **q} if isinstance(q, dict) else ({"name": str(k)} if q is None else q))
                for k, q in queues.items()
            }
        agents = value.get("agents")
        if isinstance(agents, dict):
            value["agents"] = {
                k: ({"endpoint": f"PJSIP/{k}", **a} if isinstance(a, dict) else a) for k, a in agents.items()
            }
    return value


class QueuesSection(_Model):
    """Both sections together, cross-checked: agents name real queues, overflows name real queues."""

    queues: dict[Text, QueueConfig] = Field(default_factory=dict)
    agents: dict[Text, AgentConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, value: Any) -> Any:
        return names_from_keys(value)

    @model_validator(mode="after")
    def _cross_check(self) -> QueuesSection:
        problems: list[str] = []
        for key, q in self.queues.items():
            if key != q.name:
                problems.append(f"queues.{key}: name {q.name!r} differs from its key")
            for label, spec in (("overflow_on_time", q.overflow_on_time), ("overflow_on_length", q.overflow_on_length)):
                if spec is not None and spec.queue is not None and spec.queue not in self.queues:
                    problems.append(f"queues.{key}.{label}: unknown queue {spec.queue!r}")
        seen: dict[str, str] = {}
        for key, a in self.agents.items():
            for qname in a.queues:
                if qname not in self.queues:
                    problems.append(f"agents.{key}: unknown queue {qname!r}")
            if a.endpoint in seen:
                problems.append(f"agents.{key}: endpoint {a.endpoint} already used by agent {seen[a.endpoint]!r}")
            seen[a.endpoint] = key
        cycle = _time_overflow_cycle(self.queues)
        if cycle:
            problems.append("queues overflow on time in a circle: " + " -> ".join(cycle))
        if problems:
            raise ValueError(_PROBLEM_SEPARATOR.join(problems))
        return self

    def agents_of(self, queue: str) -> list[AgentConfig]:
        return [a for a in self.agents.values() if queue in a.queues]


def _time_overflow_cycle(queues: Mapping[str, QueueConfig]) -> list[str]:
    """A caller moved on max wait keeps its arrival time, so A -> B -> A would bounce forever."""
    for start in queues:
        path = [start]
        current = queues[start]
        while current.overflow_on_time is not None and (nxt := current.overflow_on_time.queue) in queues:
            assert nxt is not None  # narrowed by the membership test
            if nxt in path:
                return [*path[path.index(nxt):], nxt]
            path.append(nxt)
            current = queues[nxt]
    return []


class QueuesConfigError(ValueError):
    """The queues/agents sections are invalid; ``errors`` are ``FILE:LINE:COL: message`` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def parse_queues_section(raw: bytes | str, filename: str = "<queues>") -> QueuesSection:
    """Read the ``queues:``/``agents:`` sections of a YAML document (other sections are ignored:
    they belong to the rules loader). Raises QueuesConfigError with positions."""
    from pbx_router.rules.yamlpos import YamlSyntaxError, load_located

    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_SECTION_BYTES:
        raise QueuesConfigError([f"{filename}:1:1: file larger than {MAX_SECTION_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueuesConfigError([f"{filename}:1:1: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise QueuesConfigError([f"{filename}:{exc.line}:{exc.column}: {exc.message}"]) from None
    if located.errors:
        raise QueuesConfigError([f"{filename}:{line}:{col}: {msg}" for line, col, msg in located.errors])
    data = located.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise QueuesConfigError([f"{filename}:1:1: expected a mapping with 'queues' and 'agents'"])
    section = {k: data[k] for k in ("queues", "agents") if k in data}
    try:
        return QueuesSection.model_validate(section)
    except ValidationError as exc:
        errors: list[str] = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line, col = located.position(loc)
            msg = str(err["msg"]).removeprefix("Value error, ")
            where = ".".join(str(p) for p in loc)
            if loc:
                errors.append(f"{filename}:{line}:{col}: {where}: {msg}")
                continue
            # Cross-checks speak for the whole section; each problem starts with its dotted path.
            for problem in msg.split(_PROBLEM_SEPARATOR):
                path = tuple(problem.split(":", 1)[0].split(".")) if ":" in problem else ()
                line, col = located.position(path)
                errors.append(f"{filename}:{line}:{col}: {problem}")
        raise QueuesConfigError(errors) from None
