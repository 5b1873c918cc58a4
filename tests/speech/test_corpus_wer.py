"""The default recogniser on telephone recordings of the held-out caller corpus (sentences outside
the intents' phrases, three voices, half with line noise), through the live decode path: the word
error rate is printed and must stay under what was reached (with a little margin).

The recordings are ``tests/corpus/audio/`` (``scripts/select_corpus_audio.py`` chose the rows,
``scripts/render_corpus_audio.sh`` rendered them); nothing was tuned on the held-out part."""

from __future__ import annotations

import csv
from pathlib import Path

from pbx_router.media.codecs import read_wav
from pbx_router.speech import EnginePool
from pbx_router.speech.factory import DEFAULT_ENGINE
from pbx_router.speech.transcribe import transcribe_pcm
from pbx_router.speech.wer import spoken_reference, word_error_rate

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
AUDIO = CORPUS / "audio"
# Reached on the held-out recordings (models/README.md): Moonshine 0.118 (PocketSphinx with the
# domain LM 0.405), plus a margin for floating-point differences between CPUs.
MAX_HELDOUT_WER = 0.14


def _rows(split: str) -> list[tuple[str, str, str, str]]:
    with (CORPUS / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        texts = {r["id"]: r["text"] for r in csv.DictReader(handle, delimiter="\t",
                                                            quoting=csv.QUOTE_NONE)}
    with (AUDIO / "audio.tsv").open(encoding="utf-8", newline="") as handle:
        plan = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["id"], r["voice"], r["noise"], texts[r["id"]]) for r in plan if r["id"] in texts]


def test_rendered_set_is_the_agreed_shape() -> None:
    dev, held = _rows("dev"), _rows("heldout")
    rows = dev + held
    assert len(rows) >= 300 and 0.25 <= len(held) / len(rows) <= 0.35
    assert {v for _, v, _, _ in rows} == {"slt", "kal", "ked"}
    noisy = sum(1 for _, _, n, _ in rows if n != "none")
    assert abs(noisy - len(rows) / 2) <= 3
    assert all((AUDIO / f"{i}.wav").is_file() for i, _, _, _ in rows)
    intents = {}
    for split in ("dev", "heldout"):
        with (CORPUS / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
            intents |= {r["id"]: r["intent"] for r in csv.DictReader(
                handle, delimiter="\t", quoting=csv.QUOTE_NONE)}
    urgent = [i for i, _, _, _ in rows if intents[i] in ("emergency", "mental_health_crisis")]
    assert len(urgent) >= 80
    assert len({intents[i] for i, _, _, _ in rows}) == 15


async def test_heldout_word_error_rate_of_the_default_recogniser() -> None:
    pairs = []
    async with EnginePool.from_config(engine=DEFAULT_ENGINE, workers=2) as pool:
        for row_id, _voice, _noise, text in _rows("heldout"):
            pcm, rate = read_wav(AUDIO / f"{row_id}.wav")
            transcript = await transcribe_pcm(pool, pcm, rate, timeout=60)
            pairs.append((spoken_reference(text), transcript.text))
    wer = word_error_rate(pairs)
    print(f"WER {DEFAULT_ENGINE} over {len(pairs)} held-out corpus recordings: {wer:.3f}")
    assert len(pairs) >= 90
    assert wer <= MAX_HELDOUT_WER
