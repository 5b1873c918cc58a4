"""How a simulated agent phone answers an outbound leg."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AgentMode = Literal["answer", "never_answer", "busy", "unreachable"]


@dataclass(frozen=True)
class AgentBehaviour:
    mode: AgentMode = "answer"
    answer_delay: float = 0.0
    talk_seconds: float | None = None  # the agent hangs up (BYE) this long after answering
    ring: bool = True

    @classmethod
    def answer_after(cls, seconds: float) -> AgentBehaviour:
        return cls("answer", answer_delay=seconds)

    @classmethod
    def never_answer(cls, ring: bool = False) -> AgentBehaviour:
        """Default = the recorded case (no UAS): one Dial "" then ChannelDestroyed cause 19."""
        return cls("never_answer", ring=ring)

    @classmethod
    def busy(cls) -> AgentBehaviour:
        return cls("busy")

    @classmethod
    def unreachable(cls) -> AgentBehaviour:
        return cls("unreachable")

    @classmethod
    def answer_then_hangup(cls, answer_after: float, talk_seconds: float) -> AgentBehaviour:
        return cls("answer", answer_delay=answer_after, talk_seconds=talk_seconds)

