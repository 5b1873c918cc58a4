"""The ``transcribe`` command as a user runs it, and the domain language model build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pbx_router.speech.lm import BackoffModel, build_domain_model, interpolate, parse_arpa, write_arpa

from .conftest import AUDIO


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pbx_router", "transcribe", *args],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


def test_transcribe_prints_the_words() -> None:
    done = run_cli(str(AUDIO / "refill_01.wav"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "i need to refill my prescription\n"


def test_transcribe_json_has_the_documented_fields() -> None:
    done = run_cli(str(AUDIO / "refill_01.wav"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"text", "confidence", "words", "engine", "alternatives", "audio_seconds",
                        "decode_seconds"}
    assert out["text"] not in out["alternatives"] and len(out["alternatives"]) <= 5
    assert out["text"] == "i need to refill my prescription" and out["engine"] == "moonshine"
    assert [w["word"] for w in out["words"]] == out["text"].split()
    assert 2.0 < out["audio_seconds"] < 4.5 and out["decode_seconds"] > 0


def test_transcribe_with_pocketsphinx() -> None:
    done = run_cli(str(AUDIO / "emergency_01.wav"), "--json", "--engine", "pocketsphinx")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["text"] == "i have chest pain" and out["engine"] == "pocketsphinx"
    assert [w["word"] for w in out["words"]] == ["i", "have", "chest", "pain"]
    assert 2.0 < out["audio_seconds"] < 4.0 and out["decode_seconds"] > 0


def test_transcribe_rejects_missing_and_malformed_files(tmp_path: Path) -> None:
    missing = run_cli(str(tmp_path / "nope.wav"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    bad = run_cli(str(junk))
    assert bad.returncode == 1 and "junk.wav" in bad.stderr and "Traceback" not in bad.stderr


def test_domain_model_is_built_once_and_includes_the_intents_phrases(tmp_path: Path) -> None:
    first = build_domain_model(["please page the midwife"], cache_dir=tmp_path)
    words = {line.split()[0].split("(")[0] for line in first.dict_path.read_text().splitlines()}
    assert {"midwife", "prescription", "representative", "nineteen"} <= words
    # Heard because the built-in corpus, the medicine list and the red flags are in the model.
    assert {"unresponsive", "lisinopril", "metformin", "bleeding", "swallowed"} <= words
    assert first.words < 10_000  # a domain vocabulary, not the 130k-word generic dictionary
    stamp = first.lm_path.stat().st_mtime_ns
    again = build_domain_model(["please page the midwife"], cache_dir=tmp_path)
    assert again.lm_path == first.lm_path and again.lm_path.stat().st_mtime_ns == stamp


def test_words_without_a_pronunciation_are_dropped_not_fatal(tmp_path: Path) -> None:
    model = build_domain_model(["call doctor zzyzxq"], cache_dir=tmp_path)
    assert "zzyzxq" in model.dropped_words
    assert "zzyzxq" not in model.lm_path.read_text()


def _toy(arpa: str) -> BackoffModel:
    return parse_arpa("\\data\\\n" + arpa)


def test_mixture_is_a_normalised_model_that_keeps_both_vocabularies() -> None:
    domain = _toy("\\1-grams:\n-99 <s> -0.3\n-0.5 </s> 0\n-0.5 refill -0.3\n-0.8 my -0.3\n"
                  "\\2-grams:\n-0.1 <s> my\n-0.1 my refill\n-0.1 refill </s>\n")
    general = _toy("\\1-grams:\n-99 <s> -0.2\n-0.7 </s> 0\n-0.9 my -0.2\n-0.6 the -0.2\n"
                   "-1.2 weather -0.1\n\\2-grams:\n-0.3 <s> the\n-0.4 the weather\n")
    vocab = {"<s>", "</s>", "refill", "my", "the", "weather"}
    mixed = interpolate(domain, general, 0.3, vocab)
    for history in [("<s>",), ("my",), ("the",), ("weather",)]:
        total = sum(mixed.prob(history + (w,)) for w in vocab - {"<s>"})
        assert abs(total - 1.0) < 1e-6, history
    assert mixed.prob(("the", "weather")) > mixed.prob(("my", "weather")) > 0  # general word kept
    assert mixed.prob(("my", "refill")) > 0.5  # the domain's own phrase still dominates
    again = parse_arpa(write_arpa(mixed))
    assert abs(again.prob(("the", "weather")) - mixed.prob(("the", "weather"))) < 1e-4
