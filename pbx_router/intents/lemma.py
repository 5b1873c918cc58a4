"""English lemmas for caller words, via ``simplemma`` (a dictionary lookup, no model, no network).

Callers say "fainted", "faints", "fainting"; "took", "swallowed", "ate"; "lips", "babies". The
screen and the ranking compare lemmas so that one lexicon entry covers every inflection. A
phone call has a small vocabulary, so an LRU cache makes the lookup a dict hit after warm-up.
"""

from __future__ import annotations

from functools import lru_cache

import simplemma

LANG = "en"


@lru_cache(maxsize=65536)
def lemma(token: str) -> str:
    """Lemma of one lower-case token ("swallowed" -> "swallow"); the token itself if unknown."""
    if not token or not token.isalpha():
        # Numbers and mixed tokens ("911", "x2") have no lemma; simplemma would only echo them.
        return token
    return simplemma.lemmatize(token, lang=LANG).lower()


def lemmas(tokens: list[str] | tuple[str, ...]) -> list[str]:
    return [lemma(t) for t in tokens]


def warm_up() -> None:
    """Load simplemma's English dictionary now (about 0.3 s), not during the first call."""
    lemma("breathing")
