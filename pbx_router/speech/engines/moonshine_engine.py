"""Moonshine recogniser (blocking; runs inside a worker process, see ``worker.py``).

Moonshine (Useful Sensors / Moonshine AI, MIT licence) is an encoder-decoder speech model whose
cost follows the length of the audio (no 30 s window), trained on general English: it hears words
no language model of ours lists. It is not a streaming model: ``accept`` buffers the utterance
(the call flow's endpointer decides where it ends) and ``final`` transcribes it; there are no
partial hypotheses (the call flow uses none).

One model per process (``load_model``), shared by every recogniser of that process: onnxruntime
releases the GIL while it runs, so the worker's session threads decode in parallel, one core each
(``intra_op_num_threads=1``: the pool's processes are the parallelism).

What a final transcript carries:
- ``text``: lower case words, numbers in words ("10:30" -> "ten thirty", "3rd" -> "third"), no
  punctuation, as the other engines and the rest of the product expect;
- ``words``: one per spoken word, with the probability the decoder gave its least sure piece
  (timings are not known: 0);
- ``confidence``: the geometric mean of the token probabilities;
- ``alternatives``: up to ``WATCH_BRANCHES`` readings that start a red-flag word the decoder
  nearly chose: that word decoded (a few tokens), the rest as heard best, kept when it brings such
  a word ("i have just pain" -> "i have chest pain", where "chest" had p 0.05): the emergency
  screen reads alternatives, so a red flag heard with low confidence still counts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pbx_router.speech import moonshine_prep as prep
from pbx_router.speech.types import EngineUnavailable, Transcript, Word
from pbx_router.speech.wer import spoken_reference

ENGINE = "moonshine"
SAMPLE_RATE = 16000
_START, _END = 1, 2
_LAYERS, _HEADS, _HEAD_DIM = 8, 8, 52  # base-en
_CACHE = [f"past_key_values.{i}.{part}.{kind}" for i in range(_LAYERS)
          for part in ("decoder", "encoder") for kind in ("key", "value")]
# Moonshine's own bound: at most ~6 tokens per second of audio (a loop is cut there).
TOKENS_PER_SECOND = 6
MIN_SECONDS = 0.1
MAX_SECONDS = 30.0  # longer audio is cut (the call flow caps an utterance well below this)
_SPACE = "\u2581"
_SPACE_BYTES = _SPACE.encode()
# Safety readings: a watched word's first piece among the decoder's top choices at least this
# likely is decoded onward (at most WATCH_BRANCHES per utterance, most likely first).
WATCH_MIN_P = 0.01
WATCH_BRANCHES = 2
WORD_TOKENS = 6  # pieces decoded for a safety reading's word at most
_TOP_K = 5


def _tokenizer(path: Path) -> list[bytes]:
    """tokenizer.bin: per token id, a length (one byte, or two when >= 128, little end first)
    then the token's bytes; "\u2581" marks a word start (SentencePiece)."""
    data = path.read_bytes()
    out: list[bytes] = []
    i = 0
    while i < len(data):
        length = data[i]
        i += 1
        if length >= 128:
            length = (length & 127) | (data[i] << 7)
            i += 1
        out.append(data[i:i + length])
        i += length
    return out


class MoonshineModel:
    """The three onnxruntime sessions and the vocabulary. Thread-safe (onnxruntime's ``run`` is)."""

    def __init__(self, directory: Path, watch_words: Iterable[str] = ()) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise EngineUnavailable(f"the moonshine engine needs onnxruntime: {exc}") from None
        missing = [name for name in prep.PREPARED if not (directory / name).is_file()]
        if missing:
            raise EngineUnavailable(f"{directory}: prepared Moonshine model incomplete ({', '.join(missing)})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

        def session(name: str) -> Any:
            return ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])

        self.encoder = session(prep.ENCODER)
        self.first = session(prep.DECODER_FIRST)
        self.step = session(prep.DECODER_STEP)
        self.vocabulary = _tokenizer(directory / prep.TOKENIZER)
        self.watch_words = frozenset(watch_words)
        # Word-start pieces that begin a watched word ("▁ch" for "chest"): when the decoder
        # nearly took one, that reading is decoded too (see ``transcribe``).
        prefixes = {w[:n] for w in self.watch_words for n in range(2, len(w) + 1)}
        self._watch_starts = frozenset(
            i for i, piece in enumerate(self.vocabulary)
            if piece.startswith(_SPACE_BYTES) and piece[len(_SPACE_BYTES):].decode("utf-8", "replace").lower()
            in prefixes)

    def transcribe(self, audio: np.ndarray[Any, np.dtype[np.float32]]) -> Decoded:
        """Float samples in [-1, 1] at 16 kHz -> the greedy decoding, its token probabilities and
        the readings worth a second look (``Decoded.alternatives``)."""
        samples = audio[: int(MAX_SECONDS * SAMPLE_RATE)][None, :]
        hidden = self.encoder.run(None, {"input_values": samples})[0]
        out = self.first.run(None, {"input_ids": np.array([[_START]], np.int64),
                                    "encoder_hidden_states": hidden})
        cache = dict(zip(_CACHE, out[1:], strict=True))
        limit = int(samples.shape[1] / SAMPLE_RATE * TOKENS_PER_SECOND) + 4
        logits = out[0][0, -1].copy()
        logits[_END] = -np.inf  # speech was detected: an empty transcript is never the answer
        best = self._greedy(logits, cache, limit)
        # For safety, the readings that start a watched word the decoder nearly chose. (A general
        # n-best, the runner-up at the most hesitant token, cost 14% more CPU and brought the
        # screen nothing these do not: measured, models/README.md.)
        # Only the word that starts there is decoded (a few tokens); the rest of the reading is the
        # best one's, from its next word on ("i have [just -> chest] pain").
        for at in sorted(best.watched, key=lambda b: -b.p)[:WATCH_BRANCHES]:
            word = self._greedy(None, dict(at.cache), WORD_TOKENS, first_token=at.token, one_word=True)
            after = next((k for k in range(at.index + 1, len(best.tokens)) if self._starts_word(best.tokens[k])),
                         len(best.tokens))
            best.alternatives.append(Decoded(
                best.tokens[:at.index] + word.tokens + best.tokens[after:],
                best.probabilities[:at.index] + [at.p] + word.probabilities[1:] + best.probabilities[after:]))
        return best

    def _starts_word(self, token: int) -> bool:
        return token < len(self.vocabulary) and self.vocabulary[token].startswith(_SPACE_BYTES)

    def _greedy(self, logits: np.ndarray[Any, Any] | None, cache: dict[str, Any], limit: int,
                first_token: int | None = None, one_word: bool = False) -> Decoded:
        """Greedy decoding from ``logits`` (or from ``first_token``, taken as given); with
        ``one_word``, it stops before the next word starts."""
        decoded = Decoded([], [])
        for index in range(max(0, limit)):
            if logits is None:
                assert first_token is not None
                token, p = first_token, 1.0
            else:
                shifted = np.exp(logits - logits.max())
                probs = shifted / shifted.sum()
                top = np.argpartition(-probs, _TOP_K)[:_TOP_K]
                top = top[np.argsort(-probs[top])]
                token, p = int(top[0]), float(probs[top[0]])
                if token == _END or (one_word and self._starts_word(token)):
                    break
                if first_token is None and token not in self._watch_starts:
                    for other in top[1:]:
                        q = float(probs[other])
                        if q >= WATCH_MIN_P and int(other) in self._watch_starts:
                            decoded.watched.append(_Branch(index, int(other), q, dict(cache)))
                            break
            decoded.tokens.append(token)
            decoded.probabilities.append(p)
            out = self.step.run(None, {"input_ids": np.array([[token]], np.int64), **cache})
            for key, value in zip(_CACHE, out[1:], strict=True):
                if ".decoder." in key:
                    cache[key] = value
            logits = out[0][0, -1]
        return decoded

    def words(self, tokens: list[int], probabilities: list[float]) -> list[tuple[str, float]]:
        """Token ids -> (written word, probability of its least sure token)."""
        out: list[tuple[bytes, float]] = []
        for token, p in zip(tokens, probabilities, strict=True):
            piece = self.vocabulary[token] if token < len(self.vocabulary) else b""
            if piece.startswith(_SPACE_BYTES) or not out:
                out.append((piece.removeprefix(_SPACE_BYTES), p))
            else:
                text, q = out[-1]
                out[-1] = (text + piece, min(p, q))
        return [(text.decode("utf-8", "replace").replace(_SPACE, " "), p) for text, p in out if text]


@dataclass(slots=True)
class _Branch:
    index: int  # token position
    token: int  # the token taken there instead
    p: float
    cache: dict[str, Any]  # the decoder cache before that position


@dataclass(slots=True)
class Decoded:
    tokens: list[int]
    probabilities: list[float]
    watched: list[_Branch] = field(default_factory=list)  # runners-up that start a watched word
    alternatives: list[Decoded] = field(default_factory=list)


_models: dict[Path, MoonshineModel] = {}
_models_lock = threading.Lock()


def load_model(directory: Path) -> MoonshineModel:
    """This process's model for ``directory`` (loaded once, ~1 s), watching the red-flag words."""
    with _models_lock:
        model = _models.get(directory)
        if model is None:
            model = _models[directory] = MoonshineModel(directory, watch_words())
        return model


# Words of the red-flag phrases too common to be worth a second reading.
_UNWATCHED = frozenset("""
about after again been being cant cannot could didnt does doesnt down from have having hes her
here hers him his into isnt just like more much over shes some that their them then there they
this very wasnt were what when will with wont would your youre
""".split())


def watch_words() -> frozenset[str]:
    """The clinical red-flag vocabulary (the speech package's list and the screen's lexicon,
    read as package files): words the recogniser gives a second look when it nearly heard one."""
    from pbx_router.speech.corpus import red_flag_sentences

    words = {w.replace("'", "") for line in red_flag_sentences() for w in line.split()}
    return frozenset(w for w in words if len(w) >= 4 and w not in _UNWATCHED)


def spoken_words(written: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Written words ("10:30", "Dr.", "$50,") -> spoken, normalised words with their probability.
    Punctuation is dropped: the model's commas on telephone audio fall where nobody paused ("no
    chest, pain, or anything") and would cut a negation's scope."""
    out: list[tuple[str, float]] = []
    for text, p in written:
        said = spoken_reference(text.replace("$", "").replace("a.m.", "am").replace("p.m.", "pm"))
        out.extend((word, p) for word in said.split())
    return out


def _text(words: list[tuple[str, float]]) -> str:
    return " ".join(word for word, _ in words)


_FRAME = SAMPLE_RATE // 50  # 20 ms
SILENCE_DB = -40.0  # below the utterance's loudest 20 ms by more than this: silence
KEEP_SILENCE_S = 0.2


def trim_silence(audio: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Drop leading and trailing silence beyond ``KEEP_SILENCE_S`` (the endpointer hands over its
    pre-roll and the end-of-speech silence): the encoder's cost follows the length of the audio.
    Line noise is not silence and is kept."""
    frames = len(audio) // _FRAME
    if frames < 3:
        return audio
    energy = (audio[: frames * _FRAME].reshape(frames, _FRAME) ** 2).mean(axis=1)
    if energy.max() <= 0:
        return audio
    loud = np.flatnonzero(energy > energy.max() * 10 ** (SILENCE_DB / 10))
    if len(loud) == 0:
        return audio
    keep = int(KEEP_SILENCE_S * 50)
    first, last = max(0, int(loud[0]) - keep), min(frames, int(loud[-1]) + 1 + keep)
    return audio[first * _FRAME: len(audio) if last == frames else last * _FRAME]


class MoonshineRecognizer:
    """One utterance at a time; the model is the process's. ``final()``/``reset()`` re-arm it."""

    def __init__(self, model: MoonshineModel, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate != SAMPLE_RATE:
            raise EngineUnavailable(f"the moonshine engine takes {SAMPLE_RATE} Hz audio, not {sample_rate}")
        self.sample_rate = sample_rate
        self._model = model
        self._audio = bytearray()

    def accept(self, pcm: bytes) -> Transcript | None:
        if len(pcm) % 2:
            raise ValueError("PCM16 must have an even number of bytes")
        if len(self._audio) < MAX_SECONDS * SAMPLE_RATE * 2:
            self._audio += pcm
        return None

    def final(self) -> Transcript:
        audio = np.frombuffer(bytes(self._audio), dtype="<i2").astype(np.float32) / 32768.0
        self._audio.clear()
        audio = trim_silence(audio)
        if len(audio) < MIN_SECONDS * SAMPLE_RATE:
            return Transcript(text="", confidence=0.0, engine=ENGINE, is_final=True)
        decoded = self._model.transcribe(audio)
        words = spoken_words(self._model.words(decoded.tokens, decoded.probabilities))
        text = _text(words)
        logs = [math.log(max(p, 1e-6)) for p in decoded.probabilities]
        confidence = round(math.exp(sum(logs) / len(logs)), 3) if logs else 0.0
        alternatives: list[str] = []
        seen = [w for w, _ in words]
        for other in decoded.alternatives:
            said = spoken_words(self._model.words(other.tokens, other.probabilities))
            brought = {w.replace("'", "") for w, _ in said} - set(seen)
            if not brought & self._model.watch_words:
                continue  # a safety reading is kept only if it brings a watched word
            if said and [w for w, _ in said] != seen and _text(said) not in alternatives:
                alternatives.append(_text(said))
        return Transcript(
            text=text, confidence=confidence,
            words=[Word(word=w, start_s=0.0, end_s=0.0, confidence=round(p, 3)) for w, p in words],
            engine=ENGINE, is_final=True, alternatives=tuple(alternatives))

    def reset(self) -> None:
        self._audio.clear()
