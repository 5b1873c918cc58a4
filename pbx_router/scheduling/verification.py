"""Caller verification policy (pure): date of birth against the patients on the caller's number.

Privacy rule: until a date of birth matches, the caller must not be able to tell whether the
number belongs to a patient. So an unknown number and a wrong date of birth take exactly the same
path (same outcome, same attempt count, same prompts); only ``VERIFIED`` differs, and it requires
the right date of birth. Failures also count across calls (``prior_failures``), so calling back
does not buy fresh attempts.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    RETRY = "retry"  # ask again
    TO_HUMAN = "to_human"  # too many failures: hand over to staff


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    max_attempts: int = 3  # per call
    # Across calls from one number: this many failures within ``failure_window`` -> straight to staff.
    max_recent_failures: int = 6
    failure_window: dt.timedelta = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Candidate:
    patient_id: int
    date_of_birth: dt.date = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerificationState:
    attempts: int = 0
    prior_failures: int = 0
    patient_id: int | None = None
    outcome: Outcome | None = None  # set once final (VERIFIED or TO_HUMAN)

    @property
    def finished(self) -> bool:
        return self.outcome is not None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    state: VerificationState
    attempts_left: int

    @property
    def patient_id(self) -> int | None:
        return self.state.patient_id


def start(policy: VerificationPolicy, prior_failures: int = 0) -> Decision:
    """The state at the start of a call. A number with too many recent failures goes to staff
    before any question is asked."""
    state = VerificationState(prior_failures=max(0, prior_failures))
    if state.prior_failures >= policy.max_recent_failures:
        state = replace(state, outcome=Outcome.TO_HUMAN)
        return Decision(Outcome.TO_HUMAN, state, 0)
    return Decision(Outcome.RETRY, state, policy.max_attempts)


def check(
    policy: VerificationPolicy,
    state: VerificationState,
    entered: dt.date | None,
    candidates: Sequence[Candidate],
) -> Decision:
    """One attempt. ``entered`` None (nothing usable was heard/typed) counts as a failure.
    ``candidates``: patients on the caller's number (empty for an unknown number)."""
    if state.finished:
        raise ValueError("verification already finished")
    matches = [c for c in candidates if entered is not None and c.date_of_birth == entered]
    attempts = state.attempts + 1
    # Two patients on one number with the same date of birth (twins) cannot be told apart by
    # DOB alone: a person sorts it out. Indistinguishable from a failure to the caller.
    if len(matches) == 1:
        verified = replace(state, attempts=attempts, patient_id=matches[0].patient_id, outcome=Outcome.VERIFIED)
        return Decision(Outcome.VERIFIED, verified, policy.max_attempts - attempts)
    failed = replace(state, attempts=attempts)
    left = policy.max_attempts - attempts
    if left <= 0 or state.prior_failures + attempts >= policy.max_recent_failures or len(matches) > 1:
        return Decision(Outcome.TO_HUMAN, replace(failed, outcome=Outcome.TO_HUMAN), 0)
    return Decision(Outcome.RETRY, failed, left)


_NON_DIGITS = re.compile(r"[^\d+]")


def normalize_number(raw: str | None, default_country_code: str = "1") -> str | None:
    """A caller ID or typed number as E.164 (``+15550101234``), or None when it cannot be one
    (anonymous, too short). North American 10-digit numbers get ``default_country_code``."""
    if not raw:
        return None
    text = _NON_DIGITS.sub("", raw.strip())
    if text.startswith("+"):
        digits = text[1:].replace("+", "")
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    digits = text.replace("+", "")
    if digits.startswith("00"):
        digits = digits[2:]
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if default_country_code == "1":
        if len(digits) == 10:
            return f"+1{digits}"
        if len(digits) == 11 and digits.startswith("1"):
            return f"+{digits}"
        return None
    digits = digits.removeprefix("0")
    full = default_country_code + digits
    return f"+{full}" if 8 <= len(full) <= 15 else None
