"""Vosk (Kaldi) recogniser, in process. Vosk releases the GIL while decoding, so the pool runs it
on a small thread pool; the model is loaded once per directory and shared by every recogniser.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pbx_router.speech.types import EngineUnavailable, Transcript, Word

ENGINE = "vosk"

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def load_model(model_path: Path) -> Any:
    """Load (once per process) the Vosk model in ``model_path``. Blocking: seconds for big models."""
    try:
        import vosk
    except ImportError as exc:  # pragma: no cover - vosk is a hard dependency
        raise EngineUnavailable("the vosk package is not installed") from exc
    path = model_path.resolve()
    with _models_lock:
        model = _models.get(path)
        if model is None:
            if not (path / "am").is_dir() and not (path / "final.mdl").exists():
                raise EngineUnavailable(f"{path}: not a Vosk model directory (no am/)")
            vosk.SetLogLevel(-1)  # Kaldi logs every config line to stderr otherwise
            try:
                model = vosk.Model(str(path))
            except Exception as exc:  # vosk raises a bare Exception on a bad model
                raise EngineUnavailable(f"{path}: failed to load Vosk model: {exc}") from exc
            _models[path] = model
        return model


def parse_result(raw: str, *, is_final: bool) -> Transcript:
    """Turn a Vosk/vosk-server result JSON into a Transcript. Malformed input raises ValueError."""
    return parse_message(raw, is_final=is_final)[0]


def parse_message(raw: str, *, is_final: bool) -> tuple[Transcript, bool]:
    """-> (transcript, is_partial). A partial (``{"partial": ...}``) is never final."""
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"recogniser returned malformed JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("recogniser result is not a JSON object")
    others: tuple[str, ...] = ()
    if "alternatives" in data and isinstance(data["alternatives"], list) and data["alternatives"]:
        # max_alternatives > 0: the best one comes first, the rest are the n-best.
        alts: list[dict[str, Any]] = [a for a in data["alternatives"] if isinstance(a, dict)]
        data = alts[0] if alts else {}
        best = _text(data.get("text", ""))
        others = tuple(dict.fromkeys(t for t in (_text(a.get("text", "")) for a in alts[1:])
                                     if t and t != best))
    if "partial" in data:
        return Transcript(text=_text(data["partial"]), confidence=0.0, engine=ENGINE,
                          is_final=False), True
    words: list[Word] = []
    for item in data.get("result") or []:
        if not isinstance(item, dict) or "word" not in item:
            raise ValueError("recogniser word entry lacks 'word'")
        words.append(Word(word=str(item["word"]), start_s=float(item.get("start", 0.0)),
                          end_s=float(item.get("end", 0.0)),
                          confidence=float(item.get("conf", item.get("confidence")) or 0.0)))
    text = _text(data.get("text", " ".join(w.word for w in words)))
    if words:
        confidence = sum(w.confidence for w in words) / len(words)
    else:
        confidence = float(data.get("confidence", 0.0)) if text else 0.0
    return Transcript(text=text, confidence=round(confidence, 3), words=words, engine=ENGINE,
                      is_final=is_final, alternatives=others), False


def merge(parts: list[Transcript], engine: str) -> Transcript:
    """Vosk ends a segment by itself at a pause inside an utterance; the utterance is all of them."""
    parts = [p for p in parts if p.text]
    words = [w for p in parts for w in p.words]
    text = " ".join(p.text for p in parts)
    if words:
        confidence = sum(w.confidence for w in words) / len(words)
    else:
        confidence = sum(p.confidence for p in parts) / len(parts) if parts else 0.0
    # Alternatives of the whole utterance: one segment heard another way, the others as best.
    alternatives: dict[str, None] = {}
    for index, part in enumerate(parts):
        for alt in part.alternatives:
            joined = " ".join([*(p.text for p in parts[:index]), alt, *(p.text for p in parts[index + 1:])])
            if joined != text:
                alternatives.setdefault(joined, None)
    return Transcript(text=text, confidence=round(confidence, 3), words=words, engine=engine,
                      is_final=True, alternatives=tuple(alternatives)[:5])


def _text(value: Any) -> str:
    return " ".join(str(value).split())


class VoskRecognizer:
    def __init__(self, model_path: Path, sample_rate: int = 16000,
                 phrases: list[str] | None = None) -> None:
        import vosk

        self.sample_rate = sample_rate
        model = load_model(model_path)
        if phrases:
            # A phrase list restricts the search (only models with a dynamic graph support it;
            # others log a warning and ignore it). "[unk]" keeps out-of-list speech from being
            # forced onto a phrase.
            self._rec = vosk.KaldiRecognizer(model, float(sample_rate),
                                             json.dumps([*phrases, "[unk]"], ensure_ascii=False))
        else:
            self._rec = vosk.KaldiRecognizer(model, float(sample_rate))
        self._rec.SetWords(True)
        self._segments: list[Transcript] = []
        self._partial_text = ""
        self._warm_up()

    def _warm_up(self) -> None:
        # A fresh KaldiRecognizer spends ~0.4 s (measured, Korean model with a lookahead graph,
        # one core) in its first decode, whatever the audio; afterwards and across Reset() a
        # 100 ms chunk costs ~14 ms. Pay that here, while the recogniser is built off any call,
        # instead of in a caller's first utterance. Low-level noise rather than digital silence:
        # it exercises the same decoder set-up a real utterance does.
        rng = np.random.default_rng(0)
        noise = rng.normal(0.0, 300.0, self.sample_rate // 2).astype("<i2").tobytes()
        self._rec.AcceptWaveform(noise)
        self._rec.FinalResult()  # not Reset(): see reset()

    def accept(self, pcm: bytes) -> Transcript | None:
        if len(pcm) % 2:
            raise ValueError("PCM16 must have an even number of bytes")
        if not pcm:
            return None
        if self._rec.AcceptWaveform(pcm):
            self._segments.append(parse_result(self._rec.Result(), is_final=False))
            text = " ".join(s.text for s in self._segments if s.text)
        else:
            partial = parse_result(self._rec.PartialResult(), is_final=False)
            text = " ".join([*(s.text for s in self._segments if s.text), partial.text]).strip()
        if text == self._partial_text:
            return None
        self._partial_text = text
        return Transcript(text=text, confidence=0.0, engine=ENGINE, is_final=False)

    def final(self) -> Transcript:
        last = parse_result(self._rec.FinalResult(), is_final=True)
        result = merge([*self._segments, last], ENGINE)
        self._segments = []
        self._partial_text = ""
        return result

    def reset(self) -> None:
        # FinalResult(), not Reset(): Reset() keeps the feature pipeline (i-vector and CMVN
        # adaptation) of the dropped audio, so the next caller's transcript would depend on what
        # the previous one said. FinalResult() rebuilds it; the ~0.4 s first-decode cost (kept in
        # the recogniser's graph cache) is not paid again.
        self._rec.FinalResult()
        self._segments = []
        self._partial_text = ""
