"""Fault injection for the recogniser, for tests and failure drills: make one utterance hang.

``PBX_ROUTER_SPEECH_FAULT=stall-on:<word>`` in the environment of a worker process (or of the
daemon, whose workers inherit it) wraps every recogniser it builds so that an utterance whose
final transcript contains ``<word>`` never returns from ``final()``, as a decoder stuck on one
caller's audio would. Every other utterance is untouched. Unset (the default), nothing is wrapped.
"""

from __future__ import annotations

import os
import threading

from pbx_router.speech.types import Recognizer, Transcript

FAULT_ENV = "PBX_ROUTER_SPEECH_FAULT"


class StallOnWord:
    """A recogniser that hangs (for good) on any utterance containing ``word``."""

    def __init__(self, inner: Recognizer, word: str) -> None:
        self.sample_rate = inner.sample_rate
        self._inner = inner
        self._word = word

    def accept(self, pcm: bytes) -> Transcript | None:
        return self._inner.accept(pcm)

    def final(self) -> Transcript:
        transcript = self._inner.final()
        if self._word in transcript.text.split():
            threading.Event().wait()  # never set: this decode is stuck
        return transcript

    def reset(self) -> None:
        self._inner.reset()


def with_faults(recognizer: Recognizer, spec: str | None = None) -> Recognizer:
    """``recognizer``, wrapped as ``spec`` (default: the environment) asks. ValueError on a bad spec."""
    spec = os.environ.get(FAULT_ENV, "") if spec is None else spec
    if not spec:
        return recognizer
    kind, _, arg = spec.partition(":")
    if kind == "stall-on" and arg:
        return StallOnWord(recognizer, arg.lower())
    raise ValueError(f"{FAULT_ENV}: unknown fault {spec!r} (known: stall-on:<word>)")
