"""Endpointing: where an utterance starts and ends, from a VAD over the caller's PCM.

Pure and synchronous (no event loop, no wall clock): time is counted from the samples fed plus
the silence gaps reported with :meth:`Endpointer.gap`, so tests are exact and replayable.

Only voiced audio plus ``padding_ms`` of context on each side is emitted as :class:`Audio`, so the
recogniser never decodes long silence. Pauses inside an utterance shorter than
``end_silence_ms`` are kept whole (the recogniser needs them to separate words).

:class:`SpeechPaused` comes once a pause has lasted ``early_final_ms`` (and at least
``padding_ms``): from then on the utterance's audio is complete unless the caller speaks again,
so recognition can start before ``end_silence_ms`` confirms the end. Audio after it means the
caller went on: that utterance is not over, and what was recognised early is for the bin.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import webrtcvad

__all__ = [
    "Audio",
    "EndpointEvent",
    "Endpointer",
    "EndpointerConfig",
    "NoInput",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechStarted",
]

_VAD_RATES = (8000, 16000, 32000, 48000)
_VAD_FRAME_MS = (10, 20, 30)


def _energy(frame: bytes) -> float:
    """Mean square of a PCM16 frame."""
    x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    return float(np.dot(x, x)) / max(1, len(x))


@dataclass(slots=True)
class EndpointerConfig:
    aggressiveness: int = 2  # webrtcvad 0 (least) .. 3 (most aggressive at calling things non-speech)
    frame_ms: int = 20
    start_speech_ms: int = 120  # this much consecutive voiced audio starts an utterance
    end_silence_ms: int = 600  # this much unvoiced audio (or RTP gap) ends it
    max_utterance_ms: int = 15000
    no_input_timeout_ms: int = 6000  # from the start (or reset()) of a turn to the first speech
    padding_ms: int = 200  # context kept before the start and after the end of speech
    # A pause this long (never less than padding_ms) sends SpeechPaused; 0 = never. Recognition
    # started there is ready when end_silence_ms confirms the end, instead of starting then.
    early_final_ms: int = 250
    # Inside an utterance, a frame this many dB below its loudest so far counts as silence, whatever
    # the VAD says: webrtcvad's own hangover calls the fading tail of a word speech for ~100 ms
    # more, which every caller waited for. A noisy line never gets that quiet: VAD alone. 0 = off.
    quiet_db: float = 40.0

    def validate(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.frame_ms not in _VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {_VAD_FRAME_MS}, got {self.frame_ms}")
        for name in ("start_speech_ms", "end_silence_ms", "max_utterance_ms", "no_input_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.padding_ms < 0:
            raise ValueError(f"padding_ms must not be negative, got {self.padding_ms}")
        if self.quiet_db < 0:
            raise ValueError(f"quiet_db must not be negative, got {self.quiet_db}")
        if self.early_final_ms < 0:
            raise ValueError(f"early_final_ms must not be negative, got {self.early_final_ms}")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at_ms: int  # stream time of the first voiced frame of the utterance


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes  # native PCM16 at the Endpointer's rate: voiced audio and its padding


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    # "silence": at_ms is the end of the last voiced frame (the decision came end_silence_ms later).
    # "max_length": at_ms is where the utterance was cut.
    at_ms: int
    reason: Literal["silence", "max_length"]


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The caller has been silent for ``early_final_ms``: every Audio of the utterance so far
    has been sent, and nothing more will be unless they speak again (see the module doc)."""

    at_ms: int  # stream time of the end of the last voiced frame


@dataclass(frozen=True, slots=True)
class NoInput:
    at_ms: int  # stream time when the no-input timeout expired


EndpointEvent = SpeechStarted | Audio | SpeechPaused | SpeechEnded | NoInput


class Endpointer:
    """Feed PCM of one call leg in order; get endpointing events back.

    A *turn* starts at construction and at each :meth:`reset` (e.g. when a prompt finishes):
    NoInput fires at most once per turn, only if no speech started in it.
    """

    def __init__(self, cfg: EndpointerConfig | None = None, sample_rate: int = 16000) -> None:
        self.cfg = cfg if cfg is not None else EndpointerConfig()
        self.cfg.validate()
        if sample_rate not in _VAD_RATES:
            raise ValueError(f"sample_rate must be one of {_VAD_RATES}, got {sample_rate}")
        self.sample_rate = sample_rate
        self._vad = webrtcvad.Vad(self.cfg.aggressiveness)
        self._frame_samples = sample_rate * self.cfg.frame_ms // 1000
        self._frame_bytes = self._frame_samples * 2
        self._pending = bytearray()
        self._samples = 0  # samples consumed, gaps included (as their sample equivalent)
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, self.cfg.padding_ms // self.cfg.frame_ms))
        self._voiced_run: list[bytes] = []
        self._in_speech = False
        self._speech_start_samples = 0
        self._last_voiced_end_samples = 0
        self._trailing: list[bytes] = []  # unvoiced frames after speech, not yet known to be inside it
        self._trailing_samples = 0  # trailing silence length, gaps included
        self._paused_sent = False  # SpeechPaused sent for the current pause
        self._peak = 0.0  # the loudest frame's mean square in the current utterance
        self._quiet_ratio = 10 ** (-self.cfg.quiet_db / 10) if self.cfg.quiet_db else 0.0
        self._turn_start_samples = 0
        self._heard_speech_this_turn = False
        self._no_input_sent = False

    # --- public --------------------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self._ms(self._samples)

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def reset(self) -> None:
        """Start a new turn: re-arm the no-input timer. An utterance in progress continues."""
        self._turn_start_samples = self._samples
        self._heard_speech_this_turn = self._in_speech
        self._no_input_sent = False

    def feed(self, pcm: bytes) -> list[EndpointEvent]:
        """Consume native PCM16 of any length; complete frames are classified at once."""
        self._pending += pcm
        events: list[EndpointEvent] = []
        audio = bytearray()
        fb = self._frame_bytes
        whole = len(self._pending) - len(self._pending) % fb
        for off in range(0, whole, fb):
            frame = bytes(self._pending[off : off + fb])
            self._frame(frame, self._vad.is_speech(frame, self.sample_rate), events, audio)
        del self._pending[:whole]
        self._flush_audio(events, audio)
        return events

    def gap(self, ms: int) -> list[EndpointEvent]:
        """Account for ``ms`` of silence during which no RTP arrived (externalMedia sends nothing
        while the bridge is silent). A half-fed frame is completed with zeros first."""
        events: list[EndpointEvent] = []
        if ms <= 0:
            return events
        audio = bytearray()
        if self._pending:
            frame = bytes(self._pending) + bytes(self._frame_bytes - len(self._pending))
            self._pending.clear()
            self._frame(frame, self._vad.is_speech(frame, self.sample_rate), events, audio)
        gap_samples = ms * self.sample_rate // 1000
        silence = bytes(self._frame_bytes)
        if self._in_speech:
            # Synthesize only as many silent frames as the utterance can still absorb; the rest of
            # the gap just moves the clock.
            needed = self._ms_to_samples(self.cfg.end_silence_ms) - self._trailing_samples
            while gap_samples >= self._frame_samples and self._in_speech and needed > 0:
                self._frame(silence, False, events, audio)
                gap_samples -= self._frame_samples
                needed -= self._frame_samples
        if gap_samples > 0:
            self._pre_roll.clear()  # audio before a gap is not context for speech after it
            self._voiced_run.clear()
            self._samples += gap_samples
            if self._in_speech:
                self._trailing_samples += gap_samples
                self._check_pause(events, audio)
                self._check_speech_end(events, audio)
            self._check_no_input(events)
        self._flush_audio(events, audio)
        return events

    # --- internals -----------------------------------------------------------------------------

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.sample_rate

    def _ms_to_samples(self, ms: int) -> int:
        return ms * self.sample_rate // 1000

    @staticmethod
    def _flush_audio(events: list[EndpointEvent], audio: bytearray) -> None:
        if audio:
            events.append(Audio(bytes(audio)))
            audio.clear()

    def _frame(
        self, frame: bytes, voiced: bool, events: list[EndpointEvent], audio: bytearray
    ) -> None:
        start = self._samples
        self._samples += self._frame_samples
        if self._in_speech:
            self._frame_in_speech(frame, voiced, start, events, audio)
        else:
            self._frame_waiting(frame, voiced, start, events, audio)
        if self._in_speech and self._samples - self._speech_start_samples >= self._ms_to_samples(
            self.cfg.max_utterance_ms
        ):
            self._end_speech(self._samples, "max_length", events, audio)
        self._check_no_input(events)

    def _frame_waiting(
        self, frame: bytes, voiced: bool, start: int, events: list[EndpointEvent], audio: bytearray
    ) -> None:
        if not voiced:
            if self._voiced_run:
                for f in self._voiced_run:
                    self._pre_roll.append(f)
                self._voiced_run.clear()
            self._pre_roll.append(frame)
            return
        self._voiced_run.append(frame)
        run_samples = len(self._voiced_run) * self._frame_samples
        if run_samples < self._ms_to_samples(self.cfg.start_speech_ms):
            return
        self._in_speech = True
        self._peak = max(_energy(f) for f in self._voiced_run)
        self._heard_speech_this_turn = True
        self._speech_start_samples = self._samples - run_samples
        self._last_voiced_end_samples = self._samples
        self._flush_audio(events, audio)
        events.append(SpeechStarted(self._ms(self._speech_start_samples)))
        padding = list(self._pre_roll) if self.cfg.padding_ms else []
        for f in padding + self._voiced_run:
            audio += f
        self._pre_roll.clear()
        self._voiced_run.clear()
        self._trailing.clear()
        self._trailing_samples = 0
        self._paused_sent = False

    def _frame_in_speech(
        self, frame: bytes, voiced: bool, start: int, events: list[EndpointEvent], audio: bytearray
    ) -> None:
        if voiced and self._quiet_ratio:
            energy = _energy(frame)
            if energy < self._peak * self._quiet_ratio:
                voiced = False  # the VAD's hangover over a fading word: silence for the end
            else:
                self._peak = max(self._peak, energy)
        if voiced:
            # The pause was inside the utterance: hand it over whole.
            for f in self._trailing:
                audio += f
            self._trailing.clear()
            self._trailing_samples = 0
            audio += frame
            self._last_voiced_end_samples = self._samples
            self._paused_sent = False
            return
        padding_samples = self._ms_to_samples(self.cfg.padding_ms)
        if self._trailing_samples < padding_samples:
            audio += frame  # trailing padding goes out at once: it is sent whatever comes next
        else:
            self._trailing.append(frame)
        self._trailing_samples += self._frame_samples
        self._check_pause(events, audio)
        self._check_speech_end(events, audio)

    def _check_pause(self, events: list[EndpointEvent], audio: bytearray) -> None:
        cfg = self.cfg
        if self._paused_sent or not cfg.early_final_ms:
            return
        threshold = self._ms_to_samples(max(cfg.early_final_ms, cfg.padding_ms))
        if threshold >= self._ms_to_samples(cfg.end_silence_ms):
            return  # the end itself comes first (or at once): nothing to start early
        if self._trailing_samples >= threshold:
            self._paused_sent = True
            self._flush_audio(events, audio)
            events.append(SpeechPaused(self._ms(self._last_voiced_end_samples)))

    def _check_speech_end(self, events: list[EndpointEvent], audio: bytearray) -> None:
        if self._trailing_samples >= self._ms_to_samples(self.cfg.end_silence_ms):
            self._end_speech(self._last_voiced_end_samples, "silence", events, audio)

    def _end_speech(
        self,
        at_samples: int,
        reason: Literal["silence", "max_length"],
        events: list[EndpointEvent],
        audio: bytearray,
    ) -> None:
        self._flush_audio(events, audio)
        events.append(SpeechEnded(self._ms(at_samples), reason))
        self._in_speech = False
        self._paused_sent = False
        self._trailing.clear()
        self._trailing_samples = 0
        self._pre_roll.clear()
        self._voiced_run.clear()

    def _check_no_input(self, events: list[EndpointEvent]) -> None:
        if self._heard_speech_this_turn or self._no_input_sent:
            return
        elapsed = self._samples - self._turn_start_samples
        if elapsed >= self._ms_to_samples(self.cfg.no_input_timeout_ms):
            self._no_input_sent = True
            events.append(NoInput(self._ms(self._turn_start_samples) + self.cfg.no_input_timeout_ms))
