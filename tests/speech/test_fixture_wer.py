"""The committed caller fixtures, through the live path (decode, resample, VAD, pool): word error
rate printed, and bounded by what was measured (generic LM ~33%, domain LM ~7%)."""

from __future__ import annotations

from pbx_router.speech import EnginePool
from pbx_router.speech.corpus import domain_sentences
from pbx_router.speech.transcribe import transcribe_file_async
from pbx_router.speech.wer import word_error_rate, word_errors

from .conftest import utterances

REQUIRED_KINDS = {
    "prescription_refill", "appointment_new", "appointment_change", "appointment_cancel",
    "speak_to_nurse", "speak_to_doctor", "test_results", "billing", "referral", "emergency",
    "operator", "yes_no", "date_time", "digits",
}


def test_fixture_set_covers_every_intent_and_kind() -> None:
    rows = utterances()
    assert len(rows) >= 30
    assert {r.kind for r in rows} >= REQUIRED_KINDS
    assert {r.voice for r in rows} == {"slt", "kal"}
    assert any(r.noise != "none" for r in rows)
    assert all(r.path.is_file() for r in rows)


async def test_domain_model_word_error_rate_over_fixtures(sphinx_pool: EnginePool) -> None:
    in_corpus = set(domain_sentences())  # packaged + generated dates/digits
    pairs: list[tuple[str, str]] = []
    seen: list[tuple[str, str]] = []
    for row in utterances():
        transcript, _ = await transcribe_file_async(row.path, sphinx_pool)
        pairs.append((row.transcript, transcript.text))
        errors, _ = word_errors(row.transcript, transcript.text)
        mark = "in-corpus" if row.transcript in in_corpus else "unseen"
        print(f"{row.path.name:22} {mark:9} err={errors} ref={row.transcript!r} hyp={transcript.text!r}")
        seen.append((row.path.name, transcript.text))
    wer = word_error_rate(pairs)
    unseen = [(r, h) for (r, h) in pairs if r not in in_corpus]
    print(f"WER pocketsphinx/domain over {len(pairs)} fixtures: {wer:.3f} "
          f"(sentences not verbatim in the corpus: {len(unseen)}, WER {word_error_rate(unseen):.3f})")
    assert dict(seen)["refill_01.wav"] == "i need to refill my prescription"
    assert wer <= 0.12


async def test_generic_model_is_worse_than_domain_model() -> None:
    rows = [r for r in utterances() if r.noise == "none"][:8]
    async with EnginePool.from_config(engine="pocketsphinx", workers=1, language_model="generic") as pool:
        pairs = [(r.transcript, (await transcribe_file_async(r.path, pool))[0].text) for r in rows]
    wer = word_error_rate(pairs)
    print(f"WER pocketsphinx/generic over {len(rows)} clean fixtures: {wer:.3f}")
    assert wer > 0.15
