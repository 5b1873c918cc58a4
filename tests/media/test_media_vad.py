"""Endpointing on real caller audio recorded through Asterisk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pbx_router.media.codecs import read_wav
from pbx_router.media.vad import (
    Audio,
    Endpointer,
    EndpointerConfig,
    EndpointEvent,
    NoInput,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)

from media_captures import path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audio"
CALLERS = [
    "sipp/caller_audio_via_externalmedia.wav",  # 8 kHz, a real RTP caller
    "slin16/externalmedia_slin16_capture.wav",  # 16 kHz
]


def speech_bounds_ms(pcm: bytes, rate: int) -> tuple[int, int]:
    """Ground truth by energy: first and last 20 ms frame clearly above the capture's floor."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    n = rate // 50
    rms = [np.sqrt(np.mean(x[i : i + n] ** 2)) for i in range(0, len(x) - n + 1, n)]
    loud = [i for i, r in enumerate(rms) if r > 200]
    return loud[0] * 20, (loud[-1] + 1) * 20


def silence(ms: int, rate: int) -> bytes:
    return bytes(2 * rate * ms // 1000)


def kinds(events: list[EndpointEvent]) -> list[type]:
    return [type(e) for e in events]


def audio_of(events: list[EndpointEvent]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, Audio))


@pytest.mark.parametrize("wav", CALLERS)
def test_real_caller_speech_is_bracketed_within_tolerance(wav: str) -> None:
    pcm, rate = read_wav(path(wav))
    start, end = speech_bounds_ms(pcm, rate)
    cfg = EndpointerConfig()
    ep = Endpointer(cfg, rate)
    events = ep.feed(silence(1000, rate) + pcm + silence(2000, rate))

    marks = kinds([e for e in events if not isinstance(e, (Audio, SpeechPaused))])
    assert marks == [SpeechStarted, SpeechEnded]
    started = next(e for e in events if isinstance(e, SpeechStarted))
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert abs(started.at_ms - (1000 + start)) <= 100
    assert abs(ended.at_ms - (1000 + end)) <= 150 and ended.reason == "silence"
    # The recogniser gets the utterance plus the padding on both sides, and no more.
    voiced_ms = len(audio_of(events)) * 1000 // (2 * rate)
    assert voiced_ms == ended.at_ms - started.at_ms + 2 * cfg.padding_ms
    # ...and it is the caller's actual audio (the leading padding comes from before the start).
    first = (started.at_ms - cfg.padding_ms) * rate // 1000 * 2
    stream = silence(1000, rate) + pcm + silence(2000, rate)
    assert audio_of(events) == stream[first : first + len(audio_of(events))]


@pytest.mark.parametrize("wav", CALLERS)
def test_chunking_does_not_change_the_result(wav: str) -> None:
    pcm, rate = read_wav(path(wav))
    stream = silence(500, rate) + pcm + silence(1000, rate)
    whole = Endpointer(EndpointerConfig(), rate).feed(stream)
    ep = Endpointer(EndpointerConfig(), rate)
    pieces: list[EndpointEvent] = []
    for i in range(0, len(stream), 777):  # odd size: frames and even samples get split
        pieces += ep.feed(stream[i : i + 777])
    strip = lambda evs: [e for e in evs if not isinstance(e, Audio)]  # noqa: E731
    assert strip(pieces) == strip(whole)
    assert audio_of(pieces) == audio_of(whole)


def test_pure_silence_never_produces_audio_and_no_input_fires_once() -> None:
    # Real silence from Asterisk: the first 2 s of the snoop capture, before the caller spoke.
    pcm, rate = read_wav(path("snoop/snoop_in_capture.wav"))
    quiet = pcm[: 2 * rate * 2]
    ep = Endpointer(EndpointerConfig(no_input_timeout_ms=6000), rate)
    events: list[EndpointEvent] = []
    for _ in range(5):  # 10 s
        events += ep.feed(quiet)
    assert events == [NoInput(at_ms=6000)]


def test_no_input_counts_rtp_gaps_and_reset_rearms_it() -> None:
    ep = Endpointer(EndpointerConfig(no_input_timeout_ms=3000), 8000)
    assert ep.feed(silence(1000, 8000)) == []
    assert ep.gap(2500) == [NoInput(at_ms=3000)]
    assert ep.gap(5000) == []  # once per turn
    ep.reset()  # e.g. the re-prompt finished
    assert ep.gap(2999) == []
    assert ep.gap(1) == [NoInput(at_ms=11500)]


def test_no_input_does_not_fire_once_the_caller_spoke() -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    ep = Endpointer(EndpointerConfig(no_input_timeout_ms=2000), rate)
    events = ep.feed(pcm) + ep.feed(silence(5000, rate))
    assert NoInput not in kinds(events) and SpeechEnded in kinds(events)


def test_an_rtp_gap_ends_the_utterance() -> None:
    # externalMedia stops sending when the caller stops: the gap is the end-of-speech silence.
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    _, end = speech_bounds_ms(pcm, rate)
    ep = Endpointer(EndpointerConfig(end_silence_ms=600), rate)
    events = ep.feed(pcm[: end * rate // 1000 * 2])
    assert SpeechStarted in kinds(events) and SpeechEnded not in kinds(events)
    assert SpeechEnded not in kinds(ep.gap(300) + ep.gap(200))  # 500 ms < end_silence_ms
    ended = [e for e in ep.gap(200) if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0].reason == "silence"
    assert abs(ended[0].at_ms - end) <= 100


def test_a_short_gap_inside_speech_does_not_end_it() -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    half = len(pcm) // 2 & ~1
    ep = Endpointer(EndpointerConfig(end_silence_ms=600), rate)
    events = ep.feed(pcm[:half]) + ep.gap(300) + ep.feed(pcm[half:]) + ep.feed(silence(1000, rate))
    assert kinds([e for e in events if not isinstance(e, (Audio, SpeechPaused))]) == [SpeechStarted, SpeechEnded]


def utterance_audio(events: list[EndpointEvent]) -> bytes:
    """The Audio of the first utterance (what its recogniser is fed)."""
    end = next(i for i, e in enumerate(events) if isinstance(e, SpeechEnded))
    return audio_of(events[:end])


@pytest.mark.parametrize("wav", CALLERS)
def test_a_pause_announces_that_the_utterance_audio_is_complete(wav: str) -> None:
    """Recognition may start at SpeechPaused (issue 11: the transcript is ready when the end is
    confirmed): by then every byte the recogniser will get has been sent, as the end will say."""
    pcm, rate = read_wav(path(wav))
    cfg = EndpointerConfig(early_final_ms=250, end_silence_ms=600)
    events = Endpointer(cfg, rate).feed(silence(500, rate) + pcm + silence(1500, rate))
    end = next(i for i, e in enumerate(events) if isinstance(e, SpeechEnded))
    paused = [i for i, e in enumerate(events[:end]) if isinstance(e, SpeechPaused)]
    assert paused, "no pause before the end"
    assert audio_of(events[paused[-1]:end]) == b""  # nothing more came after the last pause
    assert events[paused[-1]].at_ms == events[end].at_ms  # the same last voiced frame
    # And the pause changes nothing else: the same utterance as without early recognition.
    plain = Endpointer(EndpointerConfig(early_final_ms=0, end_silence_ms=600), rate)
    without = plain.feed(silence(500, rate) + pcm + silence(1500, rate))
    assert SpeechPaused not in kinds(without)
    assert utterance_audio(without) == utterance_audio(events)


def test_speech_after_a_pause_hands_over_the_pause_and_ends_later() -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    half = len(pcm) // 2 & ~1
    ep = Endpointer(EndpointerConfig(early_final_ms=250, end_silence_ms=600), rate)
    first = ep.feed(pcm[:half]) + ep.feed(silence(400, rate))
    assert SpeechPaused in kinds(first) and SpeechEnded not in kinds(first)
    assert not isinstance(first[-1], Audio)  # held back: silence beyond the padding may be a pause
    rest = ep.feed(pcm[half:]) + ep.feed(silence(1000, rate))
    # The caller went on: the held silence and the new speech come as Audio, then a new pause
    # and the end (once each).
    after = kinds([e for e in rest if not isinstance(e, Audio)])
    assert after == [SpeechPaused, SpeechEnded]
    assert isinstance(rest[0], Audio)


def test_a_silent_rtp_gap_is_a_pause_too() -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    _, end = speech_bounds_ms(pcm, rate)
    ep = Endpointer(EndpointerConfig(early_final_ms=300, end_silence_ms=600), rate)
    ep.feed(pcm[: end * rate // 1000 * 2])
    assert SpeechPaused not in kinds(ep.gap(200))
    assert kinds([e for e in ep.gap(200) if not isinstance(e, Audio)]) == [SpeechPaused]
    assert kinds(ep.gap(200)) == [SpeechEnded]


@pytest.mark.parametrize("early", [0, 600, 900])
def test_no_pause_when_early_recognition_is_off_or_not_earlier_than_the_end(early: int) -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    ep = Endpointer(EndpointerConfig(early_final_ms=early, end_silence_ms=600), rate)
    events = ep.feed(pcm + silence(1000, rate))
    assert SpeechEnded in kinds(events) and SpeechPaused not in kinds(events)


def test_max_utterance_length_cuts_a_long_talker() -> None:
    pcm, rate = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    ep = Endpointer(EndpointerConfig(max_utterance_ms=1000, end_silence_ms=600), rate)
    events = ep.feed(pcm)
    started = next(e for e in events if isinstance(e, SpeechStarted))
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert ended == SpeechEnded(at_ms=started.at_ms + 1000, reason="max_length")


@pytest.mark.parametrize(
    ("cfg", "rate"),
    [
        (EndpointerConfig(frame_ms=25), 8000),
        (EndpointerConfig(aggressiveness=4), 8000),
        (EndpointerConfig(end_silence_ms=0), 8000),
        (EndpointerConfig(early_final_ms=-1), 8000),
        (EndpointerConfig(quiet_db=-1), 8000),
        (EndpointerConfig(), 11025),
    ],
)
def test_bad_configuration_is_refused(cfg: EndpointerConfig, rate: int) -> None:
    with pytest.raises(ValueError):
        Endpointer(cfg, rate)


def _through_the_line(name: str) -> bytes:
    """A fixture as the daemon gets it: G.711 u-law on the caller's leg, slin16 from Asterisk."""
    from pbx_router.media.codecs import Resampler, ulaw_decode, ulaw_encode

    pcm, rate = read_wav(FIXTURES / name)
    r = Resampler(rate, 16000)
    return r.process(ulaw_decode(ulaw_encode(pcm))) + r.flush()


def _faded_ms(pcm: bytes, rate: int, below_db: float = 40.0) -> int:
    """Where the last word fades under ``below_db`` from the loudest 20 ms (the ground truth)."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    n = rate // 50
    ms = np.array([np.mean(x[i:i + n] ** 2) for i in range(0, len(x) - n + 1, n)]) + 1e-9
    loud = np.flatnonzero(10 * np.log10(ms / ms.max()) > -below_db)
    return int(loud[-1] + 1) * 20


def _end_ms(pcm: bytes, cfg: EndpointerConfig) -> int:
    return next(e.at_ms for e in Endpointer(cfg, 16000).feed(pcm + silence(1000, 16000))
                if isinstance(e, SpeechEnded))


@pytest.mark.parametrize("name", ["refill_01.wav", "billing_02.wav", "nurse_01.wav"])
def test_the_end_counts_from_where_the_last_word_faded_not_from_the_vads_hangover(name: str) -> None:
    """On a quiet line the caller waits end_silence_ms after their last word, not ~100 ms more."""
    pcm = _through_the_line(name)
    faded = _faded_ms(pcm, 16000)
    assert abs(_end_ms(pcm, EndpointerConfig()) - faded) <= 40
    # Without the rule, webrtcvad alone called the fading tail speech for longer.
    assert _end_ms(pcm, EndpointerConfig(quiet_db=0)) - faded >= 60


def test_on_a_noisy_line_the_vad_alone_decides() -> None:
    pcm = _through_the_line("refill_03.wav")  # pink noise about 30 dB under the speech
    assert _end_ms(pcm, EndpointerConfig()) == _end_ms(pcm, EndpointerConfig(quiet_db=0))
