"""The recogniser seam: what every engine returns and the errors the call flow handles.

Kept free of any engine import so the call flow (and tests) can use these types without loading a
model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float
    end_s: float
    # Posterior probability of this word at this place (0..1) where the engine computes one
    # (pocketsphinx: from the lattice; vosk: its per-word "conf"), else the utterance's figure.
    confidence: float


@dataclass(frozen=True, slots=True)
class Transcript:
    """One recognition hypothesis. ``text`` is lower case, words separated by single spaces.

    ``alternatives`` are the engine's next-best hypotheses for the same audio (n-best, best first,
    never containing ``text`` itself, fillers removed, no duplicates): what the caller may have said
    instead. Screens that must not miss a word heard with low confidence read them too.
    """

    text: str
    confidence: float
    words: list[Word] = field(default_factory=list)
    engine: str = ""
    is_final: bool = False
    alternatives: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["alternatives"] = list(self.alternatives)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        words = [Word(**w) for w in data.get("words", [])]
        return cls(
            text=str(data.get("text", "")),
            confidence=float(data.get("confidence", 0.0)),
            words=words,
            engine=str(data.get("engine", "")),
            is_final=bool(data.get("is_final", False)),
            alternatives=tuple(str(a) for a in data.get("alternatives", ())),
        )


class Recognizer(Protocol):
    """A single-utterance, single-thread recogniser. Engines implement it; the pool drives it
    off the event loop. ``accept`` takes native s16le PCM at ``sample_rate``."""

    sample_rate: int

    def accept(self, pcm: bytes) -> Transcript | None:
        """Feed audio; return a partial transcript when the hypothesis changed, else None."""
        ...

    def final(self) -> Transcript:
        """End the utterance and return the final transcript. The recogniser is then reset."""
        ...

    def reset(self) -> None:
        """Drop any audio fed so far and get ready for a new utterance."""
        ...


class SpeechError(Exception):
    """Base of the speech adapter's errors. The call flow falls back to the keypad on any of them."""


class EngineUnavailable(SpeechError):
    """The engine cannot be started (missing model, missing package, server unreachable)."""


class WorkerLost(SpeechError):
    """The worker holding this utterance crashed or was replaced; the utterance is gone."""


class RecognitionTimeout(SpeechError):
    """The engine did not produce a final transcript in time (the worker is replaced)."""


class PoolClosed(SpeechError):
    """The pool is shutting down or was never started."""
