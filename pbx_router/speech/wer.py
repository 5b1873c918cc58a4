"""Word error rate: (substitutions + deletions + insertions) / reference words. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz.distance import Levenshtein

from pbx_router.speech.corpus import normalise


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """-> (edit distance in words, reference word count), after normalising both."""
    ref = normalise(reference).split()
    hyp = normalise(hypothesis).split()
    return Levenshtein.distance(ref, hyp), len(ref)


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs (not the mean of per-utterance rates)."""
    errors = words = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors += e
        words += n
    return errors / words if words else 0.0
