"""Meaning-level intent evidence: a static sentence embedding plus a linear classifier.

The admin's keywords and examples say how *this* clinic's callers ask; they never cover every way
a caller can put a need ("I'm down to my last two metformin", "nobody ever called me about my
biopsy"). This module adds evidence that generalises:

  * a 256-dimension static embedding of the sentence (``wordllama``'s model, shipped inside its
    wheel: nothing is downloaded, it runs on the CPU in ~0.1 ms a sentence);
  * hashed lemma unigrams and bigrams, so that words seen in training (drug names, "balance",
    "biopsy") count even where the embedding is vague;
  * a ridge classifier over both, trained when the rules load, from the built-in base corpus of
    the standard intents (``data/base/<intent>.txt``, written for this purpose, not from any test
    set) plus the clinic's own examples and keywords (weighted up: the clinic knows its callers).

Training is a closed-form solve (about a second), cached on disk by the hash of what it was
trained on and shared in-process, so a rules reload with unchanged intents costs nothing.
``explain`` gives, per intent, the classifier's probability and the nearest training sentences
with their similarity, which is what the decision trace shows an admin.

Pure domain code: no I/O but reading the packaged corpus and the cache; no event loop.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from pbx_router.intents.lemma import lemma as _lemma
from pbx_router.intents.lemma import warm_up as _warm_lemmas
from pbx_router.intents.normalize import STOPWORDS, normalize
from pbx_router.intents.spec import IntentSpec

# Bump when features or training change, so stale caches are not reused.
_RECIPE = "semantic-7"
HASH_DIMS = 2048
EMBED_WEIGHT = 1.0
LEXICAL_WEIGHT = 1.0
RIDGE_LAMBDA = 1.0
EXAMPLE_WEIGHT = 3.0
KEYWORD_WEIGHT = 1.0
# Softmax temperature over ridge scores (which sit roughly in 0..1 for the true class).
TEMPERATURE = 20.0
MEDICINE_TOKEN = "__medicine__"
# Cosine similarity to the nearest training sentence below which the classifier has no say,
# and the span over which its say grows to full (dev corpus: 99% of requests are above 0.34).
RELEVANCE_FLOOR = 0.25
RELEVANCE_RAMP = 0.2


class TextEncoder(Protocol):
    """Sentence -> fixed-size vector. Rows of the result are L2-normalised float32."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class WordLlamaEncoder:
    """``wordllama``'s packaged static embedding (l2_supercat, 256 dimensions).

    Its loader looks for the tokenizer under ``tokenizer/`` while the wheel ships it under
    ``tokenizers/``; pointing ``cache_dir`` at the package's own folder makes it find both files
    there, and ``disable_download`` makes a missing file an error instead of a network call."""

    name = "wordllama-l2_supercat-256"

    def __init__(self) -> None:
        import wordllama
        from wordllama import WordLlama

        root = Path(wordllama.__file__).parent
        self._model = WordLlama.load(cache_dir=root, disable_download=True, dim=256)
        self.dim = 256

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # A text of only unknown tokens pools to a zero vector: normalising it warns and gives NaN.
        with np.errstate(invalid="ignore", divide="ignore"):
            vectors = np.asarray(self._model.embed(list(texts), norm=True), dtype=np.float32)
        return np.nan_to_num(vectors)


@lru_cache(maxsize=1)
def default_encoder() -> TextEncoder:
    """One encoder per process (~35 MB of weights), shared by every rules version."""
    return WordLlamaEncoder()


# -- packaged data --------------------------------------------------------------------------------


def _data_text(name: str) -> str | None:
    try:
        return resources.files("pbx_router.intents").joinpath(f"data/{name}").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None


def _lines(text: str | None) -> list[str]:
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@lru_cache(maxsize=64)
def base_corpus(intent: str) -> tuple[str, ...]:
    """The built-in sentences for a standard intent (empty for an intent we ship none for)."""
    if not intent.replace("_", "").isalnum():
        return ()
    return tuple(_lines(_data_text(f"base/{intent}.txt")))


@lru_cache(maxsize=1)
def builtin_intents() -> tuple[str, ...]:
    """The standard intents the package ships training sentences for."""
    folder = resources.files("pbx_router.intents").joinpath("data/base")
    names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt") and not p.name.startswith("_"))
    return tuple(names)


@lru_cache(maxsize=1)
def medicine_names() -> frozenset[tuple[str, ...]]:
    """Medicine names as normalised token tuples (one or more words each)."""
    names = set()
    for line in _lines(_data_text("medicines.txt")):
        tokens = tuple(normalize(line))
        if tokens:
            names.add(tokens)
    return frozenset(names)


# -- features -------------------------------------------------------------------------------------


def mark_medicines(tokens: list[str]) -> list[str]:
    """Replace medicine names (longest first, up to 3 words) with one marker token."""
    names = medicine_names()
    if not names:
        return tokens
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in (3, 2, 1):
            if i + n <= len(tokens) and tuple(tokens[i : i + n]) in names:
                out.append(MEDICINE_TOKEN)
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def lexical_features(tokens: Sequence[str]) -> np.ndarray:
    """Hashed lemma unigrams (content words) and bigrams (all words), L2-normalised."""
    vec = np.zeros(HASH_DIMS, dtype=np.float32)
    lemmas = [_lemma(t) if t != MEDICINE_TOKEN else t for t in tokens]
    grams = [w for w, t in zip(lemmas, tokens, strict=True) if t not in STOPWORDS]
    grams += [f"{a} {b}" for a, b in zip(lemmas, lemmas[1:], strict=False)]  # neighbours
    for gram in grams:
        vec[zlib.crc32(gram.encode("utf-8")) % HASH_DIMS] = 1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else vec


def embed_text(tokens: Sequence[str]) -> str:
    """What the embedding sees: the words, with a medicine name spelled as the word 'medication'."""
    return " ".join("medication" if t == MEDICINE_TOKEN else t for t in tokens)


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SemanticScore:
    intent: str
    probability: float
    nearest: str
    similarity: float


@dataclass(frozen=True, slots=True)
class SemanticResult:
    scores: tuple[SemanticScore, ...]  # every intent, most probable first
    none: float = 0.0  # probability that the turn is nothing a clinic line acts on



NONE = "_none"


def training_set(specs: Mapping[str, IntentSpec]) -> list[tuple[str, str, float]]:
    """(intent, sentence, weight): base corpus, then the clinic's examples and keywords, then the
    out-of-domain class (greetings, "can you hear me", noise) that no intent should claim."""
    rows: list[tuple[str, str, float]] = []
    for name, spec in specs.items():
        base_name = spec.base or name
        for sentence in base_corpus(base_name):
            rows.append((name, sentence, 1.0))
        for example in spec.examples:
            rows.append((name, example, EXAMPLE_WEIGHT))
        for keyword in spec.keywords:
            rows.append((name, keyword, KEYWORD_WEIGHT))
    for sentence in base_corpus(NONE):
        rows.append((NONE, sentence, 1.0))
    return rows


class SemanticModel:
    """Trained once per set of intents; ``score`` is pure and thread-safe."""

    def __init__(
        self,
        intents: Sequence[str],
        weights: np.ndarray,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        train_text: Sequence[str],
        encoder: TextEncoder,
        based: Iterable[str] = (),
    ) -> None:
        self.intents = tuple(intents)
        self._weights = weights
        self._train_vectors = train_vectors
        self._train_labels = train_labels
        self._train_text = tuple(train_text)
        self._encoder = encoder
        self._by_intent = [np.flatnonzero(train_labels == k) for k in range(len(self.intents))]
        self._based = frozenset(based)
        self._vocab = frozenset(t for text in train_text for t in normalize(text))
        _warm_lemmas()  # loads the lemmatiser's dictionary now, not during a caller's turn

    def has_base(self, intent: str) -> bool:
        """Whether the built-in corpus (not only the clinic's own examples) trained this intent."""
        return intent in self._based


    def rejoin(self, tokens: list[str]) -> list[str]:
        """Undo the recogniser's word splits the training vocabulary can vouch for: "pre
        scription" -> "prescription", "re fill" -> "refill" (two pieces, one of them not a word
        we ever trained on, whose concatenation is)."""
        vocab = self._vocab
        out: list[str] = []
        i = 0
        while i < len(tokens):
            if i + 1 < len(tokens):
                a, b = tokens[i], tokens[i + 1]
                joined = a + b
                if joined in vocab and (a not in vocab or b not in vocab):
                    out.append(joined)
                    i += 2
                    continue
            out.append(tokens[i])
            i += 1
        return out

    def features(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(full feature row, embedding) for one utterance's normalised tokens."""
        marked = mark_medicines(self.rejoin(tokens))
        emb = self._encoder.encode([embed_text(marked)])[0]
        row = np.concatenate(
            [emb * EMBED_WEIGHT, lexical_features(marked) * LEXICAL_WEIGHT, np.ones(1, np.float32)]
        )
        return row, emb

    def score(
        self, tokens: list[str], nearest: bool = True, explain: int = 3, relevance: bool = True
    ) -> SemanticResult:
        """Probabilities for every intent; the ``explain`` most probable also get their nearest
        training sentence and its cosine similarity."""
        if not tokens or not self.intents:
            return SemanticResult(())
        row, emb = self.features(tokens)
        if not np.any(emb):
            # No word the embedding knows: nothing to go on (the bias alone would pick the
            # largest class, which is the emergency one).
            return SemanticResult((), 1.0)
        # einsum, not @: these products are small, and OpenBLAS's threads on a busy machine
        # turn 0.2 ms into several (measured); a caller's turn must not wait on them.
        raw = np.einsum("f,fc->c", row, self._weights)
        probs = _softmax(raw * TEMPERATURE)
        need = (nearest or relevance) and len(self._train_text)
        sims = np.einsum("nd,d->n", self._train_vectors, emb) if need else None
        # A sentence unlike anything in training (garbage, another language, another business)
        # gets no say: the classifier's probabilities are scaled by how close the nearest
        # training sentence is, and the remainder goes to "nothing to act on".
        if sims is not None and relevance:
            closest = float(sims.max())
            share = min(1.0, max(0.0, (closest - RELEVANCE_FLOOR) / RELEVANCE_RAMP))
            if share < 1.0:
                none_k = self.intents.index(NONE)
                probs = probs * share
                probs[none_k] += 1.0 - share
        if not nearest:
            sims = None
        out = []
        none = 0.0
        for rank, k in enumerate(np.argsort(-probs)):
            name = self.intents[int(k)]
            if name == NONE:
                none = float(probs[k])
                continue
            best_text, best_sim = "", 0.0
            members = self._by_intent[int(k)]
            if sims is not None and rank < explain and len(members):
                idx = members[int(np.argmax(sims[members]))]
                best_text, best_sim = self._train_text[idx], float(sims[idx])
            out.append(SemanticScore(name, float(probs[k]), best_text, best_sim))
        return SemanticResult(tuple(out), none)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max()
    e = np.exp(z)
    probs: np.ndarray = e / e.sum()  # annotated: numpy's stubs type this division as Any
    return probs


# -- training and cache ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("PBX_ROUTER_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "pbx-router" / "intents"


_MEMO: dict[str, SemanticModel] = {}
_MEMO_MAX = 8


def build_semantic_model(
    specs: Mapping[str, IntentSpec],
    encoder: TextEncoder | None = None,
    cache_dir: Path | None = None,
) -> SemanticModel:
    """Train (or load from cache) the classifier for these intents. Blocking, about a second the
    first time for ~2,000 sentences; instant when the same intents were trained before."""
    enc = encoder or default_encoder()
    rows = training_set(specs)
    intents = [*specs, NONE]
    digest = _digest(enc.name, intents, rows)
    memo = _MEMO.get(digest)
    if memo is not None and memo._encoder is enc:
        return memo
    labels = np.array([intents.index(r[0]) for r in rows], dtype=np.int32)
    texts = [r[1] for r in rows]
    folder = cache_dir or default_cache_dir()
    path = folder / f"{digest}.npz"
    weights: np.ndarray | None = None
    train_vectors: np.ndarray | None = None
    if path.exists():
        try:
            with np.load(path) as data:
                weights, train_vectors = data["weights"], data["vectors"]
        except (OSError, ValueError, KeyError):
            weights = train_vectors = None
    if weights is None or train_vectors is None:
        token_rows = [mark_medicines(normalize(t)) for t in texts]
        train_vectors = enc.encode([embed_text(t) for t in token_rows]) if rows else np.zeros((0, enc.dim), np.float32)
        lexical = np.stack([lexical_features(t) for t in token_rows]) if rows else np.zeros((0, HASH_DIMS), np.float32)
        x = np.concatenate(
            [train_vectors * EMBED_WEIGHT, lexical * LEXICAL_WEIGHT, np.ones((len(rows), 1), np.float32)],
            axis=1,
        )
        sample_w = np.array([r[2] for r in rows], dtype=np.float32)
        weights = _ridge(x, labels, len(intents), sample_w)
        _save(path, weights, train_vectors)
    based = [n for n, spec in specs.items() if base_corpus(spec.base or n)]
    model = SemanticModel(intents, weights, train_vectors, labels, texts, enc, based)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[digest] = model
    return model


def _ridge(x: np.ndarray, labels: np.ndarray, classes: int, sample_w: np.ndarray) -> np.ndarray:
    """Weighted ridge regression onto one-hot targets: W = (X'SX + lambda I)^-1 X'SY.

    Solved in whichever of the primal (features) or dual (samples) form is smaller."""
    n, d = x.shape
    if n == 0:
        return np.zeros((d, classes), dtype=np.float32)
    y = np.zeros((n, classes), dtype=np.float32)
    y[np.arange(n), labels] = 1.0
    sw = np.sqrt(sample_w)[:, None]
    xs, ys = (x * sw).astype(np.float64), (y * sw).astype(np.float64)
    if d <= n:
        gram = xs.T @ xs
        gram[np.diag_indices(d)] += RIDGE_LAMBDA
        w = np.linalg.solve(gram, xs.T @ ys)
    else:
        gram = xs @ xs.T
        gram[np.diag_indices(n)] += RIDGE_LAMBDA
        w = xs.T @ np.linalg.solve(gram, ys)
    return w.astype(np.float32)


def _digest(encoder: str, intents: Iterable[str], rows: Iterable[tuple[str, str, float]]) -> str:
    h = hashlib.sha256()
    for part in (_RECIPE, encoder, str(HASH_DIMS), str(EMBED_WEIGHT), str(LEXICAL_WEIGHT),
                 str(RIDGE_LAMBDA), "|".join(intents)):
        h.update(part.encode("utf-8") + b"\0")
    for name, text, weight in rows:
        h.update(f"{name}\t{text}\t{weight}\n".encode())
    for tokens in sorted(medicine_names()):
        h.update(" ".join(tokens).encode("utf-8") + b"\n")
    return h.hexdigest()[:20]


def _save(path: Path, weights: np.ndarray, vectors: np.ndarray) -> None:
    """Best effort: a read-only cache only costs the next start a retrain."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, weights=weights, vectors=vectors)
        os.replace(tmp, path)
    except OSError:
        pass
