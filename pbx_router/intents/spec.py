"""What an admin writes about one intent in the rules file (validated by pydantic)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Urgency = Literal["routine", "urgent", "emergency"]
URGENCY_RANK: dict[str, int] = {"routine": 0, "urgent": 1, "emergency": 2}
DEFAULT_KEYWORD_WEIGHT = 0.7
# The matcher compares keywords with windows of at most this many caller words.
MAX_KEYWORD_WORDS = 6


def _listify(value: Any) -> Any:
    """Admins write a single item without brackets; accept it as a one-item list."""
    if value is None:
        return []
    if isinstance(value, (str, int, float, dict)):
        return [value]
    return value


def _keywords(value: Any) -> Any:
    """``keywords`` is a list (default weight) or a mapping keyword -> weight."""
    value = _listify(value)
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict):
                out.update(item)
            else:
                out[str(item)] = DEFAULT_KEYWORD_WEIGHT
        return out
    return value


def _digit(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


class IntentSpec(BaseModel):
    """One caller intent: how to recognise it and how urgent it is."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    examples: Annotated[list[str], BeforeValidator(_listify)] = Field(
        default_factory=list, description="Whole phrases a caller might say."
    )
    keywords: Annotated[dict[str, float], BeforeValidator(_keywords)] = Field(
        default_factory=dict,
        description="Words/short phrases; a list (weight 0.7 each) or a mapping word -> weight 0..1.",
    )
    regex: Annotated[list[str], BeforeValidator(_listify)] = Field(
        default_factory=list,
        description="Python regular expressions over the normalised text.",
    )
    digit: Annotated[str | None, BeforeValidator(_digit)] = Field(
        default=None,
        pattern=r"^[0-9*#]$",
        description="Keypad key that selects this intent.",
    )
    urgency: Urgency = "routine"
    base: str | None = Field(
        default=None,
        description="The built-in intent whose training sentences back this one (default: the"
        " intent's own name when it is a standard one, e.g. prescription_refill). Lets a clinic"
        " rename an intent and keep the built-in understanding.",
    )

    @field_validator("keywords")
    @classmethod
    def _weights_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for word, weight in value.items():
            if not 0.0 < weight <= 1.0:
                raise ValueError(
                    f"keyword {word!r}: weight must be in (0, 1], got {weight}"
                )
            if not word.strip():
                raise ValueError("keywords must not be empty")
            if len(word.split()) > MAX_KEYWORD_WORDS:
                raise ValueError(
                    f"keyword {word!r}: at most {MAX_KEYWORD_WORDS} words (use an example phrase for longer ones)"
                )
        return value

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_evidence(self) -> IntentSpec:
        if not (self.examples or self.keywords or self.regex or self.digit):
            raise ValueError(
                "an intent needs at least one of examples, keywords, regex or digit"
            )
        return self
