"""The Moonshine engine (the default recogniser): model preparation from the wheel, the words it
returns, the safety readings the emergency screen depends on, and the worker-process pool."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pbx_router.speech import EnginePool
from pbx_router.speech import moonshine_prep as prep
from pbx_router.speech.engines import moonshine_engine as me
from pbx_router.speech.factory import DEFAULT_ENGINE, RecognizerFactory
from pbx_router.speech.transcribe import transcribe_file_async
from pbx_router.speech.types import EngineUnavailable
from pbx_router.speech.wer import spoken_reference, word_error_rate

from .conftest import AUDIO, pcm16k, utterances


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> me.MoonshineRecognizer:
    ready = RecognizerFactory(engine="moonshine").prepare(tmp_path_factory.mktemp("moonshine"))
    rec = RecognizerFactory(engine="moonshine", model_path=ready.model_path).create()
    assert isinstance(rec, me.MoonshineRecognizer)
    return rec


def hear(rec: me.MoonshineRecognizer, name: str) -> tuple[str, tuple[str, ...]]:
    rec.accept(pcm16k(name))
    t = rec.final()
    return t.text, t.alternatives


def test_moonshine_is_the_default_engine() -> None:
    from pbx_router.config import SpeechConfig

    assert DEFAULT_ENGINE == "moonshine"
    assert SpeechConfig().engine == "moonshine"


def test_prepared_model_is_built_once_and_reused(tmp_path: Path) -> None:
    first = prep.prepare_model(tmp_path)
    assert sorted(p.name for p in first.iterdir()) == sorted(prep.PREPARED)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    started = time.monotonic()
    again = prep.prepare_model(tmp_path)
    assert again == first
    assert time.monotonic() - started < 2.0  # a content hash, not a rebuild
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == stamps
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".moonshine-")]  # no leftovers


def test_a_missing_model_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="Moonshine model files missing"):
        prep.prepare_model(tmp_path / "cache", source=tmp_path)
    with pytest.raises(EngineUnavailable, match="incomplete"):
        me.MoonshineModel(tmp_path)


def test_tokenizer_of_the_wheel_reads_whole() -> None:
    vocabulary = me._tokenizer(prep.source_dir() / prep.TOKENIZER)
    assert len(vocabulary) == 32000
    assert vocabulary[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert sum(1 for v in vocabulary if v.startswith("\u2581".encode())) > 10000


def test_written_words_become_spoken_words() -> None:
    words = me.spoken_words([("Can", 0.9), ("I", 0.9), ("come", 0.8), ("at", 0.9), ("10:30", 0.6),
                             ("on", 0.9), ("the", 0.9), ("3rd?", 0.7), ("It's", 0.9), ("$50.", 0.5)])
    assert me._text(words) == "can i come at ten thirty on the third it's fifty"
    assert dict(words)["thirty"] == 0.6


def test_silence_around_speech_is_trimmed_but_line_noise_is_not() -> None:
    rate = me.SAMPLE_RATE
    tone = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)).astype(np.float32)
    silence = np.zeros(rate, np.float32)
    trimmed = me.trim_silence(np.concatenate([silence, tone, silence]))
    assert abs(len(trimmed) - (rate + 2 * me.KEEP_SILENCE_S * rate)) <= 2 * rate // 50
    noisy = np.random.default_rng(1).normal(0, 0.05, 3 * rate).astype(np.float32)
    noisy[rate:2 * rate] += tone
    assert len(me.trim_silence(noisy)) == len(noisy)


def test_too_little_audio_is_an_empty_transcript(recognizer: me.MoonshineRecognizer) -> None:
    recognizer.accept(b"\x00\x01" * 400)
    t = recognizer.final()
    assert t.text == "" and t.is_final and t.engine == "moonshine"
    with pytest.raises(ValueError):
        recognizer.accept(b"\x00")
    assert recognizer.accept(b"\x00\x00" * 160) is None  # no partials: the utterance is buffered
    recognizer.reset()
    assert recognizer.final().text == ""


def test_fixture_word_error_rate(recognizer: me.MoonshineRecognizer) -> None:
    pairs = []
    for row in utterances():
        text, _ = hear(recognizer, row.path.name)
        pairs.append((spoken_reference(row.transcript), text))
    wer = word_error_rate(pairs)
    print(f"WER moonshine over {len(pairs)} fixtures: {wer:.3f}")
    assert wer <= 0.10  # measured 0.082 (PocketSphinx with the domain LM: 0.095)


def test_a_red_flag_the_model_nearly_heard_is_offered_as_an_alternative(
        recognizer: me.MoonshineRecognizer) -> None:
    # slt's "chest" comes out as "just" (p 0.94 against 0.05 for the piece that starts "chest").
    text, alternatives = hear(recognizer, "emergency_01.wav")
    assert text == "i have just pain"
    assert "i have chest pain" in alternatives


def test_words_carry_the_decoders_confidence(recognizer: me.MoonshineRecognizer) -> None:
    recognizer.accept(pcm16k("refill_01.wav"))
    t = recognizer.final()
    assert t.text == "i need to refill my prescription"
    assert [w.word for w in t.words] == t.text.split()
    assert all(0.0 < w.confidence <= 1.0 for w in t.words)
    assert 0.5 < t.confidence <= 1.0


async def test_the_pool_runs_moonshine_in_worker_processes() -> None:
    async with EnginePool.from_config(engine="moonshine", workers=1) as pool:
        assert len(pool.worker_pids) == 1
        transcript, seconds = await transcribe_file_async(AUDIO / "appt_cancel_01.wav", pool)
    assert seconds > 1
    assert "cancel" in transcript.text.split()
