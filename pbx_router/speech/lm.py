"""Build the PocketSphinx domain language model and pronunciation dictionary from the corpus.

Uses the ARPA builder that ships inside the ``pocketsphinx`` wheel (``pocketsphinx.lm.ArpaBoLM``),
so no extra tools are needed. The result is small (a few hundred words instead of the generic
model's 130k-word dictionary and 20 MB LM), which makes decoding both faster and more accurate on
what callers to a clinic actually say. Built once per distinct corpus and cached on disk, keyed by
the content hash, so workers started later (or after a crash) load it in milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pbx_router.log import get_logger
from pbx_router.speech.corpus import domain_sentences

log = get_logger(__name__)

# Bump when the build recipe changes so stale caches are not reused.
_RECIPE_VERSION = "1"


@dataclass(frozen=True, slots=True)
class DomainModel:
    lm_path: Path
    dict_path: Path
    words: int
    sentences: int
    dropped_words: tuple[str, ...]  # corpus words with no pronunciation in cmudict


def default_cache_dir() -> Path:
    base = os.environ.get("PBX_ROUTER_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "pbx-router" / "speech"


def _load_cmudict(path: Path) -> dict[str, list[str]]:
    """word -> pronunciation lines (``word phones`` / ``word(2) phones``) as they appear in the file."""
    entries: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            head, _, _ = line.partition(" ")
            word = head.split("(", 1)[0]
            entries.setdefault(word, []).append(line.rstrip("\n"))
    return entries


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def build_domain_model(
    extra_phrases: Iterable[str] = (),
    cache_dir: Path | None = None,
    cmudict_path: Path | None = None,
) -> DomainModel:
    """Return the domain LM + dictionary for the packaged corpus plus ``extra_phrases``, building
    it if this exact corpus has not been built before. Blocking; call off the event loop."""
    from pocketsphinx import get_model_path
    from pocketsphinx.lm import ArpaBoLM

    cmudict_path = cmudict_path or Path(get_model_path("en-us/cmudict-en-us.dict"))
    sentences = domain_sentences(extra_phrases)
    digest = hashlib.sha256(
        ("\n".join([_RECIPE_VERSION, str(cmudict_path), *sentences])).encode("utf-8")
    ).hexdigest()[:16]
    target = (cache_dir or default_cache_dir()) / f"domain-{digest}"
    lm_path, dict_path = target / "domain.lm", target / "domain.dic"
    vocabulary = sorted({w for s in sentences for w in s.split()})
    if lm_path.exists() and dict_path.exists():
        return DomainModel(lm_path, dict_path, len(vocabulary), len(sentences), ())

    cmudict = _load_cmudict(cmudict_path)
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
    dictionary = "\n".join(line for w in known for line in cmudict[w]) + "\n"

    target.mkdir(parents=True, exist_ok=True)
    _atomic_write(dict_path, dictionary)
    _atomic_write(lm_path, arpa.getvalue())
    log.info("speech.lm.built", words=len(known), sentences=len(sentences), path=str(target))
    return DomainModel(lm_path, dict_path, len(known), len(sentences), dropped)
