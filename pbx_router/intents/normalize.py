"""Text normalisation for recogniser output: pure functions, no state.

Phone recognisers (PocketSphinx on 8 kHz audio) split, merge and mis-spell words
("pray scription", "a point meant", "re fill"). Matching therefore happens on a *folded*
form: lower-case, contractions expanded, a light stem, and a phonetic-ish spelling fold so
that words which sound alike compare alike. Both the admin's keywords and the caller's words
go through the same functions, so the fold only has to be consistent, not linguistically right.
"""

from __future__ import annotations

import re
import unicodedata

# Expanded before punctuation is stripped, so "don't" and an ASR's "dont" end up identical.
_CONTRACTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"\bcan'?t\b", "can not"),
        (r"\bcannot\b", "can not"),
        (r"\bwon'?t\b", "will not"),
        (r"\bain'?t\b", "am not"),
        (
            r"\b(do|does|did|is|are|was|were|have|has|had|could|would|should|must|need)n'?t\b",
            r"\1 not",
        ),
        (r"\bi'?m\b", "i am"),
        (r"\b(i|you|we|they|he|she|it|that)'d\b", r"\1 would"),
        (r"\b(i|you|we|they|he|she|it|that)'ll\b", r"\1 will"),
        (r"\b(i|you|we|they)'ve\b", r"\1 have"),
        (r"\b(you|we|they)'re\b", r"\1 are"),
        (r"\b(it|that|what|there|here)'s\b", r"\1 is"),
        (r"\bwanna\b", "want to"),
        (r"\bgonna\b", "going to"),
        (r"\bgotta\b", "got to"),
    )
)

# Hesitations carry no intent. Recogniser noise markers ([noise], <sil>, [breath]) are removed
# as bracketed tokens first, so real words like "breath" and "cough" survive.
FILLERS = frozenset(
    {
        "um",
        "umm",
        "uh",
        "uhh",
        "uhm",
        "er",
        "erm",
        "ah",
        "ahh",
        "hmm",
        "hm",
        "mm",
        "mhm",
        "oh",
    }
)
_MARKERS = re.compile(r"\[[^\]]*\]|<[^>]*>")

# Words that carry no content when comparing against example phrases.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "us",
        "our",
        "you",
        "your",
        "to",
        "of",
        "for",
        "on",
        "in",
        "at",
        "with",
        "about",
        "from",
        "and",
        "or",
        "so",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "hi",
        "hello",
        "hey",
        "yes",
        "yeah",
        "yep",
        "okay",
        "ok",
        "please",
        "thanks",
        "thank",
        "would",
        "like",
        "could",
        "can",
        "will",
        "just",
        "also",
        "really",
        "very",
        "calling",
        "call",
        "want",
        "wanted",
        "need",
        "needed",
        "get",
        "got",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "some",
        "any",
        "one",
        "if",
        "then",
        "than",
        "what",
        "when",
        "how",
        "who",
        "which",
        "im",
        "ill",
        "id",
        "good",
        "morning",
        "afternoon",
        "evening",
    ]
)

_NON_ALNUM = re.compile(r"[^a-z0-9' ]+")
_WS = re.compile(r"\s+")
_DOUBLE = re.compile(r"(.)\1+")
_VOWEL_RUN = re.compile(r"[aeiouy]{2,}")


def normalize(text: str) -> list[str]:
    """Lower-case word tokens with contractions expanded and fillers removed."""
    folded = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    )
    lowered = _MARKERS.sub(" ", folded.lower()).replace("\u2019", "'").replace("`", "'")
    for pattern, repl in _CONTRACTIONS:
        lowered = pattern.sub(repl, lowered)
    lowered = _NON_ALNUM.sub(" ", lowered).replace("'", "")
    return [tok for tok in _WS.split(lowered) if tok and tok not in FILLERS]


def stem(token: str) -> str:
    """Strip the commonest English suffixes so "refilled", "refills", "refilling" agree."""
    if len(token) > 5 and token.endswith("ing"):
        return token[:-3]
    if len(token) > 4 and token.endswith("ed"):
        return token[:-2]
    if (
        len(token) > 3
        and token.endswith("s")
        and not token.endswith(("ss", "us", "is"))
    ):
        return token[:-1]
    return token


def fold(token: str) -> str:
    """Phonetic-ish spelling fold of one token: letters that sound alike become one letter."""
    t = stem(token)
    t = t.replace("ph", "f").replace("ck", "k").replace("wh", "w").replace("gh", "g")
    t = re.sub(r"c(?=[eiy])", "s", t)
    t = t.replace("c", "k").replace("q", "k").replace("x", "ks").replace("z", "s")
    t = _DOUBLE.sub(r"\1", t)
    # A run of vowels is usually one sound in English; keep its first letter.
    t = _VOWEL_RUN.sub(lambda m: m.group(0)[0], t)
    if len(t) > 3 and t.endswith("e"):
        t = t[:-1]
    return t


def fold_phrase(tokens: list[str] | tuple[str, ...]) -> str:
    """Fold a run of tokens into one spaceless key, so split/merged words still compare."""
    return "".join(fold(t) for t in tokens)
