"""What the recogniser says besides its best string: per-word posteriors and the n-best
alternatives, and that every backend hands them to the call flow unchanged."""

from __future__ import annotations

import json

from pbx_router.speech import EnginePool, Transcript, Word
from pbx_router.speech.engines.vosk_engine import merge, parse_message
from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.thread_backend import ThreadBackend
from pbx_router.speech.transcribe import transcribe_file_async

from .conftest import AUDIO, chunks, pcm16k


def _check(final: Transcript) -> None:
    assert final.alternatives, "a lattice always has runners-up"
    assert final.text not in final.alternatives
    assert len(set(final.alternatives)) == len(final.alternatives) <= 5
    assert all(a and "<" not in a and "[" not in a and "(" not in a for a in final.alternatives)
    assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
    # Real per-word posteriors, not one utterance figure copied onto every word.
    assert len({w.confidence for w in final.words}) > 1


def test_transcript_json_round_trip_keeps_alternatives_and_word_confidences() -> None:
    original = Transcript(text="i have chest pain", confidence=0.41, engine="pocketsphinx",
                          is_final=True, alternatives=("i have just pain", "i have chest pains"),
                          words=[Word("i", 0.1, 0.2, 0.97), Word("chest", 0.5, 0.9, 0.12)])
    again = Transcript.from_json(json.loads(json.dumps(original.to_json())))
    assert again == original
    assert Transcript.from_json({"text": "yes", "confidence": 1}).alternatives == ()


async def test_worker_process_final_carries_alternatives_and_word_posteriors(
        sphinx_pool: EnginePool) -> None:
    async with sphinx_pool.session() as session:
        for chunk in chunks(pcm16k("emergency_03.wav")):
            await session.feed(chunk)
        final = await session.finish(timeout=10)
    assert "chest pain" in final.text
    _check(final)


async def test_recording_through_the_live_path_keeps_them() -> None:
    async with EnginePool.from_config(engine="pocketsphinx", workers=1) as pool:
        transcript, _ = await transcribe_file_async(AUDIO / "appt_new_02.wav", pool)
    _check(transcript)


async def test_thread_backend_passes_them_through() -> None:
    backend = ThreadBackend(RecognizerFactory(engine="pocketsphinx").prepare(), workers=1)
    await backend.start()
    try:
        session = await backend.open()
        for chunk in chunks(pcm16k("referral_01.wav")):
            await session.feed(chunk)
        final = await session.finish(10)
        await session.close()
    finally:
        await backend.close()
    assert "referral" in final.text
    _check(final)


def test_vosk_server_n_best_becomes_alternatives() -> None:
    raw = json.dumps({"alternatives": [
        {"text": "i need a refill", "confidence": 310.2},
        {"text": "i need a refill", "confidence": 300.0},
        {"text": "i need a real", "confidence": 290.1},
    ]})
    transcript, partial = parse_message(raw, is_final=True)
    assert not partial and transcript.text == "i need a refill"
    assert transcript.alternatives == ("i need a real",)
    second, _ = parse_message(json.dumps({"text": "please", "result": [
        {"word": "please", "start": 0.1, "end": 0.4, "conf": 0.8}]}), is_final=True)
    joined = merge([transcript, second], "vosk")
    assert joined.text == "i need a refill please"
    assert joined.alternatives == ("i need a real please",)
    assert [w.confidence for w in joined.words] == [0.8]
