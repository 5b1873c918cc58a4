"""Word error rate: (substitutions + deletions + insertions) / reference words. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz.distance import Levenshtein

from pbx_router.speech.corpus import normalise

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_SUFFIX = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d\d)\b")
_NUMBER = re.compile(r"\b\d+\b")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def number_words(n: int) -> str:
    """12 -> "twelve", 103 -> "one hundred and three", 1980 -> "nineteen eighty" (years as said)."""
    if n < 100:
        return _below_100(n)
    if 1100 <= n <= 1999 or 2010 <= n <= 2099:
        high, low = divmod(n, 100)
        return f"{_below_100(high)} " + (_below_100(low) if low >= 10 else
                                         f"oh {_ONES[low]}" if low else "hundred")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {_below_100(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        tail = "" if not rest else (f" and {_below_100(rest)}" if rest < 100 else f" {number_words(rest)}")
        return f"{number_words(thousands)} thousand{tail}"
    return " ".join(_ONES[int(d)] for d in str(n))


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def spoken_reference(text: str) -> str:
    """A written sentence as it is spoken (digits, times and ordinals in words), normalised: the
    reference a transcript of its recording is compared with. "3:30" -> "three thirty"."""
    text = _TIME.sub(lambda m: f"{number_words(int(m[1]))} "
                     + ("o'clock" if m[2] == "00" else
                        f"oh {_ONES[int(m[2])]}" if m[2].startswith("0") else number_words(int(m[2]))),
                     text)
    text = _ORDINAL_SUFFIX.sub(lambda m: _ordinal(number_words(int(m[1]))), text)
    text = _NUMBER.sub(lambda m: number_words(int(m[0])), text)
    return normalise(text.replace("%", " percent").replace("&", " and "))


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
