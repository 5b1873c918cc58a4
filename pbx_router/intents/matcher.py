"""Rank a caller's intents from a (possibly garbled) transcript, with a calibrated confidence.

Evidence per intent comes from three places, each scored 0..1:
  * keywords: fuzzy-compared (rapidfuzz) against every 1..6-word window of the folded
    transcript, so "pray scription" still hits "prescription";
  * example phrases: how much of an example's content words the caller said (fuzzily),
    per un-negated stretch of speech;
  * admin regexes over the normalised text.
  * meaning: a classifier over a sentence embedding and lemmas (``semantic.py``), trained from the
    built-in base corpus of the standard intents plus the clinic's examples, so unseen phrasings,
    medicine names and descriptions of situations still reach the right intent;
  * the emergency screen (``screen.py``): built-in clinical red flags, found by meaning with
    NegEx-style negation, on the transcript and the recogniser's alternatives. A red flag makes
    the call an emergency whatever the intent lists say; the clinic cannot switch it off.
Lexical evidence combines like independent probabilities (1 - prod(1 - e)). Simple negation
("I don't need a refill") turns a keyword hit into counter-evidence, and a correction ("... I mean
the nurse") discounts what came before it; the classifier sees only the affirmed words.

Confidence is the intent's evidence shrunk by how much the other intents compete for the same
words, so one clear request scores high, a mixed or vague one scores low, and a random sentence
(no evidence) scores ~0. Safety first: a red flag, or an emergency intent with real evidence, is
ranked first whatever else was said. Two requests in one turn ("a refill and an appointment") are
both listed in ``MatchResult.requests``; the rules decide which is served first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from pbx_router.intents.normalize import STOPWORDS, fold, fold_phrase, normalize
from pbx_router.intents.spec import MAX_KEYWORD_WORDS, IntentSpec
from pbx_router.log import get_logger

if TYPE_CHECKING:
    from pbx_router.intents.screen import EmergencyScreen, ScreenResult
    from pbx_router.intents.semantic import SemanticModel

log = get_logger(__name__)

DEFAULT_FLOOR = 0.5
MAX_NGRAM = MAX_KEYWORD_WORDS
MAX_TOKENS = 150
# Evidence an emergency intent needs before it overrides everything else. Deliberately low:
# a false alarm costs a human call-back, a miss can cost a life.
EMERGENCY_EVIDENCE = 0.45
URGENT_EVIDENCE = 0.5
# An urgent intent named only by a clinical word ("bleeding", "allergic reaction") while the
# classifier is sure the caller asks for something else ("reschedule my colonoscopy, I had a little
# bleeding last month", "update the allergy list in my chart") is not put first: the word is the
# story, not the request. Dev corpus: urgent_clinical precision 66% -> 76%, its recall unchanged.
URGENT_YIELD = 0.9
URGENT_AGREE = 0.2
# Weight kept by a request the caller corrected ("refill, I mean the nurse").
RETRACTED_WEIGHT = 0.35
# How much the clinic's keyword/example evidence counts next to the classifier.
LEXICAL_SHARE = 0.6
# Classifier evidence below this is not listed.
SEMANTIC_MIN = 0.05
# Share of the words after a correction in the classifier's view of the turn.
CORRECTION_SHARE = 0.7
# Classifier probability an emergency intent needs, without a red flag or a keyword, to be ranked
# first. Recall for emergencies is the screen's job; this catches what it has no words for.
SEMANTIC_EMERGENCY = 0.9
# ... and this much when the screen judged the red-flag words it heard not current.
SEMANTIC_EMERGENCY_DENIED = 0.99
# With the screen run and silent, an emergency keyword needs this much classifier agreement...
EMERGENCY_AGREE = 0.8
# ... or it counts for this share of its usual weight (it may still win as an ordinary intent).
UNSCREENED_KEYWORD_SHARE = 0.3
# An emergency intent at this confidence, even below the floor or not first, is a possible
# emergency: the caller goes to a person, never to self-service or another reprompt.
SUSPECTED_EMERGENCY = 0.25
# Confidence kept by an emergency intent with neither a red flag nor strong evidence.
UNFLAGGED_EMERGENCY_SHARE = 0.5
# A clause counts as a request of its own when the classifier is this sure of it.
CLAUSE_MIN = 0.55
_CORRECTION_WORDS = frozenset({"mean", "meant", "wait", "actually", "sorry", "scratch", "that", "rather", "no"})
_REQUEST_BOUNDARIES = frozenset({"and", "also", "plus", "then", "but", "another", "second", "secondly"})

# "not" negates a request only when it reads like one ("do not need", "not the pharmacy");
# "not feeling well", "will not be able to come" describe the caller instead.
_NOT_TRIGGERS = frozenset(
    [
        "need",
        "needing",
        "want",
        "wanting",
        "looking",
        "calling",
        "call",
        "about",
        "for",
        "the",
        "a",
        "an",
        "my",
        "interested",
        "asking",
        "trying",
        "regarding",
        # "I don't have chest pain", "she's not having any trouble breathing"
        "have",
        "having",
        "got",
    ]
)
_DETERMINERS = frozenset({"the", "a", "an", "my", "your"})
# "no" followed by these starts a new request ("no, I need the nurse") rather than negating one.
_NO_FOLLOWERS = frozenset(
    [
        "i",
        "we",
        "my",
        "thanks",
        "thank",
        "wait",
        "please",
        "it",
        "its",
        "sorry",
        "actually",
        "maam",
        "sir",
    ]
)
_BOUNDARIES = frozenset(
    [
        "but",
        "and",
        "also",
        "plus",
        "so",
        "then",
        "because",
        "though",
        "although",
        "however",
        # "I don't want to cancel, just move it": what follows "just" is the request.
        "just",
        "only",
    ]
)
_SUBJECTS = frozenset({"i", "we"})
_CORRECTIONS: tuple[tuple[str, ...], ...] = (
    ("i", "mean"),
    ("i", "meant"),
    ("no", "wait"),
    ("scratch", "that"),
    ("or", "rather"),
    ("actually",),
    ("sorry",),
)


@dataclass(frozen=True, slots=True)
class IntentScore:
    """One ranked intent: calibrated confidence, raw evidence and why."""

    intent: str
    confidence: float
    evidence_score: float
    urgency: str
    evidence: tuple[str, ...] = ()
    position: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "urgency": self.urgency,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Ranked intents for one utterance (or keypad press). Plain, immutable data."""

    text: str
    normalized: str
    intents: tuple[IntentScore, ...]
    floor: float = DEFAULT_FLOOR
    source: str = "speech"  # "speech" | "keypad" | "empty"
    # Clinical red flags the emergency screen found (flag, label, words, score, source, route).
    red_flags: tuple[dict[str, Any], ...] = ()
    # Red-flag words the caller denied or spoke of as past ("no chest pain"), for the trace.
    denied: tuple[str, ...] = ()
    # Separate requests in this turn, in the order the caller made them (at most two).
    requests: tuple[str, ...] = ()

    @property
    def top(self) -> IntentScore | None:
        return self.intents[0] if self.intents else None

    @property
    def intent(self) -> str | None:
        return self.intents[0].intent if self.intents else None

    @property
    def confidence(self) -> float:
        return self.intents[0].confidence if self.intents else 0.0

    @property
    def understood(self) -> bool:
        """True when the top intent clears the confidence floor the rules file set."""
        return bool(self.intents) and self.intents[0].confidence >= self.floor

    @property
    def urgency(self) -> str:
        return self.intents[0].urgency if self.intents else "routine"

    @property
    def urgent(self) -> bool:
        return self.understood and self.urgency != "routine"

    @property
    def evidence(self) -> tuple[str, ...]:
        return self.intents[0].evidence if self.intents else ()

    @property
    def red_flagged(self) -> bool:
        """A red flag in what the recogniser heard best (not only in an alternative)."""
        return any(not f.get("possible") for f in self.red_flags)

    @property
    def suspicion(self) -> str:
        """Why this turn might be an emergency even if it was not understood as one ('' if not)."""
        if self.red_flags:
            kind = "red flag " if self.red_flagged else "possible red flag "
            return kind + ", ".join(f["flag"] for f in self.red_flags)
        for s in self.intents:
            if s.urgency == "emergency" and s.confidence >= SUSPECTED_EMERGENCY:
                return f"{s.intent} {s.confidence:.2f}"
        return ""

    @property
    def emergency_suspected(self) -> bool:
        return bool(self.suspicion)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "understood": self.understood,
            "urgency": self.urgency,
            "intents": [s.to_dict() for s in self.intents],
        }
        if self.red_flags:
            out["red_flags"] = [dict(f) for f in self.red_flags]
        if self.denied:
            out["denied"] = list(self.denied)
        if len(self.requests) > 1:
            out["requests"] = list(self.requests)
        return out


@dataclass(frozen=True, slots=True)
class _Keyword:
    intent: str
    phrase: str
    key: str
    weight: float
    min_score: float
    words: int


@dataclass(slots=True)
class _Evidence:
    positive: list[float] = field(default_factory=list)
    negative: float = 0.0
    notes: list[str] = field(default_factory=list)
    position: int = 1 << 30
    semantic: float = 0.0  # classifier probability (0 when the classifier is off)
    red_flag: float = 0.0  # strongest red-flag finding routed to this intent
    # Caller words this intent's keywords claimed; intents claiming the same words compete,
    # intents with separate words are separate requests ("a refill and an appointment").
    tokens: set[int] = field(default_factory=set)


def _min_score(key: str) -> float:
    """Short words must match exactly (after folding); longer ones tolerate recogniser slips.

    The score is normalised Levenshtein similarity: unlike an Indel ratio it charges a whole
    missing word ("want to" vs "want to die") as heavily as it should."""
    if len(key) <= 4:
        return 1.0
    if len(key) <= 6:
        return 0.83
    return 0.8


@lru_cache(maxsize=4096)
def _fold_cached(token: str) -> str:
    return fold(token)


def _content(tokens: list[str]) -> str:
    return " ".join(_fold_cached(t) for t in tokens if t not in STOPWORDS)


def _flags(tokens: list[str]) -> tuple[list[bool], int]:
    """Per token: is it inside a negation's scope? And where does the last correction start?"""
    negated = [False] * len(tokens)
    active = False
    seen_content = False
    correction_at = -1
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in _BOUNDARIES or (tok in _SUBJECTS and i > 0 and active):
            active = False
        # "not the pharmacy, the nurse": a second object after the negated one is the request.
        if active and tok in _DETERMINERS and seen_content:
            active = False
        if active and tok not in STOPWORDS and tok not in _DETERMINERS and tok != "not":
            seen_content = True
        for marker in _CORRECTIONS:
            if tuple(tokens[i : i + len(marker)]) == marker and i > 0:
                correction_at = i
                active = False
        if tok == "no" and nxt in _NO_FOLLOWERS and i > 0:
            correction_at = i
            active = False
        starts = (
            (tok == "not" and nxt in _NOT_TRIGGERS)
            or tok in ("never", "without")
            or (tok == "no" and nxt and nxt not in _NO_FOLLOWERS)
            or (tok == "instead" and nxt == "of")
            or (tok == "rather" and nxt == "than")
        )
        if starts:
            active, seen_content = True, False
        elif tok == "instead":
            active = False
        negated[i] = active
    return negated, correction_at


def _count_flag(e: _Evidence, score: float, note: str) -> None:
    """A red flag counted as heard: it carries its intent, noted first in the trace."""
    e.red_flag = max(e.red_flag, max(score, 0.01))
    e.notes.insert(0, note)


class IntentMatcher:
    """Built once per rules version from its intents; ``match`` is pure and thread-safe."""

    def __init__(
        self,
        source: Any,
        floor: float | None = None,
        *,
        semantic: SemanticModel | None = None,
        screen: EmergencyScreen | None = None,
    ) -> None:
        intents: Mapping[str, IntentSpec] = getattr(source, "intents", source)
        if floor is None:
            settings = getattr(source, "settings", None)
            floor = getattr(settings, "confidence_floor", DEFAULT_FLOOR)
        self.floor: float = float(floor if floor is not None else DEFAULT_FLOOR)
        self.specs: dict[str, IntentSpec] = dict(intents)
        self.semantic = semantic
        if screen is None:
            # The screen is not optional: without a clinic's additions it runs with the built-in
            # red flags.
            from pbx_router.intents.screen import EmergencyScreen

            screen = EmergencyScreen()
        self.screen: EmergencyScreen = screen
        self._emergency_intent = next(
            (n for n, sp in self.specs.items() if sp.urgency == "emergency"), "emergency"
        )
        self._keywords: list[_Keyword] = []
        for name, spec in self.specs.items():
            for phrase, weight in spec.keywords.items():
                words = normalize(phrase)
                key = fold_phrase(words)
                if not key:
                    continue
                self._keywords.append(
                    _Keyword(
                        name,
                        phrase,
                        key,
                        weight,
                        _min_score(key),
                        min(len(words), MAX_NGRAM),
                    )
                )
        self._kw_keys = [k.key for k in self._keywords]
        self._kw_min = (
            np.array([k.min_score for k in self._keywords], dtype=np.float32) - 1e-6
        )
        self._examples: list[
            tuple[str, str, str]
        ] = []  # (intent, phrase, folded content)
        vocab: dict[str, int] = {}
        self._ex_token_ids: list[Any] = []
        for name, spec in self.specs.items():
            for example in spec.examples:
                content = _content(normalize(example))
                if content:
                    self._examples.append((name, example, content))
                    ids = [vocab.setdefault(t, len(vocab)) for t in content.split()]
                    self._ex_token_ids.append(np.array(ids, dtype=np.intp))
        self._ex_vocab = list(vocab)
        # Example x vocabulary averaging matrix: coverage of every example in one product.
        self._ex_matrix = np.zeros((len(self._examples), len(vocab)), dtype=np.float32)
        for row, ids in enumerate(self._ex_token_ids):
            np.add.at(self._ex_matrix[row], ids, 1.0 / len(ids))
        self._max_ngram = max([k.words for k in self._keywords] or [1])
        self._regexes = [
            (name, re.compile(p))
            for name, spec in self.specs.items()
            for p in spec.regex
        ]
        self._digits = {
            spec.digit: name for name, spec in self.specs.items() if spec.digit
        }

    # -- public -----------------------------------------------------------------------------

    def match(
        self,
        text: str,
        alternatives: Sequence[str] = (),
        word_confidences: Sequence[float] | None = None,
    ) -> MatchResult:
        """Rank every intent with any evidence in ``text``; never raises on any string.

        ``alternatives`` are the recogniser's other hypotheses (n-best) and ``word_confidences``
        its per-word posteriors: the emergency screen looks at them too, so a red flag heard
        badly still reaches a person."""
        # A caller's turn is a sentence or two; bound the work for a runaway transcript.
        tokens = normalize(text or "")[:MAX_TOKENS]
        normalized = " ".join(tokens)
        screened = self._screen(text or "", alternatives, word_confidences)
        if not tokens and not (screened is not None and screened.flagged):
            return MatchResult(text or "", "", (), self.floor, "empty")
        negated, correction_at = _flags(tokens)
        evidence: dict[str, _Evidence] = {}

        def ev(intent: str) -> _Evidence:
            return evidence.setdefault(intent, _Evidence())

        self._keyword_evidence(tokens, negated, correction_at, ev)
        self._example_evidence(tokens, negated, correction_at, ev)
        for name, rx in self._regexes:
            hit = rx.search(normalized)
            if hit:
                e = ev(name)
                e.positive.append(0.9)
                e.notes.append(f"regex {rx.pattern!r} matched {hit.group(0)!r}")
                e.position = min(e.position, normalized[: hit.start()].count(" "))
        self._semantic_evidence(tokens, negated, correction_at, ev)
        red_flags = self._red_flag_evidence(screened, ev)
        # The screen found red-flag words but judged them not current ("no chest pain", "after
        # my stroke last year", "my seizure medicine"): the clinic's emergency keywords and the
        # classifier must not overrule that on the same words.
        denied = screened is not None and not screened.flagged and bool(screened.dismissed)
        ranked = self._rank(evidence, screened is not None, denied)
        top = ranked[0] if ranked else None
        if (red_flags and all(f["possible"] for f in red_flags) and top is not None
                and top.urgency == "urgent" and top.confidence >= self.floor):
            # A red flag only in another reading of the audio, while what was heard best is itself
            # an urgent clinical complaint ("i have just pain" / "i have chest pain"): the
            # complaint corroborates the reading, so it counts as heard.
            red_flags = tuple({**f, "possible": False, "corroborated_by": top.intent} for f in red_flags)
            for f in red_flags:
                _count_flag(ev(f["route"]), float(f["score"]),
                            f"red flag: {f['label']}: {' '.join(f['words'])!r} ({f['source']}, "
                            f"corroborated by the clinical request '{top.intent}')")
            ranked = self._rank(evidence, screened is not None, denied)
        requests = self._requests(tokens, negated, correction_at, ranked)
        return MatchResult(
            text,
            normalized,
            ranked,
            self.floor,
            "speech",
            red_flags=red_flags,
            denied=tuple(screened.denied) if screened is not None else (),
            requests=requests,
        )

    def match_digits(self, digits: str) -> MatchResult:
        """A keypad press selects the intent bound to that key, with full confidence."""
        key = (digits or "").strip()[:1]
        name = self._digits.get(key)
        if name is None:
            return MatchResult(digits or "", key, (), self.floor, "keypad")
        score = IntentScore(
            name, 1.0, 1.0, self.specs[name].urgency, (f"keypad {key}",), 0
        )
        return MatchResult(digits, key, (score,), self.floor, "keypad")

    # -- evidence ---------------------------------------------------------------------------

    def _keyword_evidence(
        self,
        tokens: list[str],
        negated: list[bool],
        correction_at: int,
        ev: Any,
    ) -> None:
        if not self._keywords:
            return
        folded = [_fold_cached(t) for t in tokens]
        grams: list[str] = []
        spans: list[tuple[int, int]] = []
        for n in range(1, self._max_ngram + 1):
            for i in range(len(tokens) - n + 1):
                grams.append("".join(folded[i : i + n]))
                spans.append((i, n))
        scores = cdist(
            self._kw_keys,
            grams,
            scorer=Levenshtein.normalized_similarity,
            dtype=np.float32,
        )
        hit_rows, hit_cols = np.nonzero(scores >= self._kw_min[:, None])
        best: dict[
            int, tuple[float, int, bool, int]
        ] = {}  # keyword -> (sim, start, negated, n)
        for row, col in zip(hit_rows.tolist(), hit_cols.tolist(), strict=True):
            sim = float(scores[row, col])
            start, n = spans[col]
            kw = self._keywords[row]
            # Emergency keywords are negated too ("no chest pain, just my refill"): recall for
            # emergencies is the screen's job, and it scopes negation the NegEx way.
            is_neg = negated[start]
            prev = best.get(row)
            # Prefer a positive mention over a negated one, then the better similarity.
            if (
                prev is None
                or (prev[2] and not is_neg)
                or (prev[2] == is_neg and sim > prev[0])
            ):
                best[row] = (sim, start, is_neg, n)
        # A keyword heard exactly explains its words: another intent's fuzzy hit on the same
        # words ("schedule an appointment" ~ "reschedule my appointment"), or a shorter hit
        # inside it ("appointment" inside "cancel my appointment"), is not evidence.
        exact = [
            (self._keywords[row].intent, set(range(start, start + n)))
            for row, (sim, start, neg, n) in best.items()
            if sim >= 0.999 and not neg
        ]
        for row, (sim, start, neg, n) in list(best.items()):
            kw = self._keywords[row]
            if neg or self.specs[kw.intent].urgency == "emergency":
                continue
            mine = set(range(start, start + n))
            for intent, span in exact:
                if intent == kw.intent:
                    continue
                if (sim < 0.999 and mine & span) or mine < span:
                    del best[row]
                    break
        later_positive = (
            any(
                not neg and start >= correction_at
                for (_, start, neg, _n) in best.values()
            )
            if correction_at > 0
            else False
        )
        for row, (sim, start, is_neg, n) in best.items():
            kw = self._keywords[row]
            e = ev(kw.intent)
            words = " ".join(tokens[start : start + n])
            if is_neg:
                e.negative = max(e.negative, kw.weight * sim)
                e.notes.append(f"negated keyword {kw.phrase!r} ({words!r})")
                continue
            factor = 1.0
            if (
                later_positive
                and start < correction_at
                and self.specs[kw.intent].urgency != "emergency"
            ):
                factor = RETRACTED_WEIGHT
                e.notes.append(f"corrected away: keyword {kw.phrase!r}")
            e.positive.append(kw.weight * sim * factor)
            e.position = min(e.position, start)
            e.tokens.update(range(start, start + n))
            e.notes.append(f"keyword {kw.phrase!r} ~ {words!r} ({sim:.2f})")

    def _example_evidence(
        self, tokens: list[str], negated: list[bool], correction_at: int, ev: Any
    ) -> None:
        """How much of each example's content the caller said, per stretch of un-negated speech.

        Coverage, not symmetric similarity: "appointment" alone must not look like "reschedule
        my appointment", while a long rambling call containing a whole example should."""
        if not self._examples:
            return
        segments: list[
            tuple[list[str], float, int]
        ] = []  # (folded content tokens, factor, start)
        current: list[str] = []
        seg_start = 0
        for i, tok in enumerate(tokens + ["<end>"]):
            cut = i == len(tokens) or negated[i] or (i == correction_at and i > 0)
            if cut and current:
                factor = (
                    RETRACTED_WEIGHT
                    if 0 < correction_at and seg_start < correction_at
                    else 1.0
                )
                segments.append((current, factor, seg_start))
                current = []
            if i < len(tokens) and not negated[i]:
                if not current:
                    seg_start = i
                if tok not in STOPWORDS:
                    current.append(_fold_cached(tok))
        if not segments:
            return
        flat = [t for seg in segments for t in seg[0]]
        owner = np.array([k for k, seg in enumerate(segments) for _ in seg[0]])
        sims = cdist(
            self._ex_vocab,
            flat,
            scorer=Levenshtein.normalized_similarity,
            dtype=np.float32,
        )
        sims[sims < 0.8] = 0.0
        per_segment = np.zeros((len(self._ex_vocab), len(segments)), dtype=np.float32)
        for k in range(len(segments)):
            per_segment[:, k] = sims[:, owner == k].max(axis=1)
        best: dict[str, tuple[float, str, int]] = {}
        # einsum, not @: no BLAS threads for a product this small (on a busy box they cost ms).
        coverages = np.einsum("ev,vs->es", self._ex_matrix, per_segment) * self._seg_factors(segments)
        where = coverages.argmax(axis=1).tolist()
        values = coverages.max(axis=1).tolist()
        for (intent, phrase, _), k, value in zip(self._examples, where, values, strict=True):
            if value > best.get(intent, (0.0, "", 0))[0]:
                best[intent] = (value, phrase, segments[k][2])
        for intent, (coverage, phrase, start) in best.items():
            strength = max(0.0, (coverage - 0.6) / 0.4) * 0.9
            if strength <= 0.05:
                continue
            e = ev(intent)
            e.positive.append(strength)
            if not e.tokens:
                e.position = min(e.position, start)
            e.notes.append(f"like example {phrase!r} ({coverage:.2f})")

    def _screen(
        self, text: str, alternatives: Sequence[str], word_confidences: Sequence[float] | None
    ) -> ScreenResult | None:
        try:
            return self.screen.screen(text, alternatives, word_confidences)
        except Exception:  # noqa: BLE001 - a screen bug must not cost the caller the call
            # Never silent: a caller we could not screen is treated as unscreened, and the
            # lexical and semantic emergency evidence still applies.
            log.error("emergency_screen_failed")
            return None

    def _semantic_evidence(
        self, tokens: list[str], negated: list[bool], correction_at: int, ev: Any
    ) -> None:
        """Classifier probabilities over the affirmed words (negated stretches removed); after a
        correction ("refill, no wait, the nurse") the words after it weigh most."""
        model = self.semantic
        if model is None:
            return
        affirmed = [t for t, neg in zip(tokens, negated, strict=True) if not neg]
        if not any(t not in STOPWORDS and t not in ("no", "not") for t in affirmed):
            # Nothing but a refusal ("no, none of those"): the refusal is the request.
            affirmed = tokens
        result = model.score(affirmed)
        probs = {sc.intent: sc.probability for sc in result.scores}
        if correction_at > 0:
            after = [t for t, neg in zip(tokens[correction_at:], negated[correction_at:], strict=True) if not neg]
            if sum(t not in STOPWORDS and t not in _CORRECTION_WORDS for t in after) >= 1:
                late = model.score(after, nearest=False)
                for sc in late.scores:
                    probs[sc.intent] = (1.0 - CORRECTION_SHARE) * probs.get(sc.intent, 0.0) + (
                        CORRECTION_SHARE * sc.probability
                    )
        nearest = {sc.intent: (sc.nearest, sc.similarity) for sc in result.scores}
        for intent, prob in probs.items():
            if prob < SEMANTIC_MIN or intent not in self.specs:
                continue
            e = ev(intent)
            e.semantic = prob
            near, sim = nearest.get(intent, ("", 0.0))
            e.notes.append(
                f"classifier {prob:.2f}" + (f", nearest {near!r} ({sim:.2f})" if near else "")
            )

    def _red_flag_evidence(self, screened: ScreenResult | None, ev: Any) -> tuple[dict[str, Any], ...]:
        if screened is None or not screened.flagged:
            return ()
        out: list[dict[str, Any]] = []
        for f in screened.findings:
            route = f.route if f.route and self._is_emergency_intent(f.route) else None
            if route is None:
                default = "mental_health_crisis" if f.category == "crisis" else "emergency"
                route = default if self._is_emergency_intent(default) else self._emergency_intent
            e = ev(route)
            # Found in what the recogniser heard best (even on unsure words): an emergency. Found
            # only in one of its alternatives: a possible one; the caller goes to a person, but
            # without the 911 path a garbled "I need my chest x-ray results" would otherwise take.
            heard = f.source in ("", "transcript") or f.source.startswith("best")
            if heard:
                where = "" if f.source in ("", "best", "transcript") else f" ({f.source})"
                _count_flag(e, f.score, f"red flag: {f.label}: {' '.join(f.words)!r}{where}")
                e.position = min(e.position, f.start)
            else:
                e.notes.insert(0, f"possible red flag: {f.label}: {' '.join(f.words)!r} ({f.source})")
            # The finding as the screen describes it, with where it goes and how sure we are.
            out.append({**f.to_dict(), "route": route, "possible": not heard})
        return tuple(out)

    def _backed(self, name: str) -> bool:
        return self.semantic is not None and self.semantic.has_base(name)

    def _is_emergency_intent(self, name: str) -> bool:
        spec = self.specs.get(name)
        return spec is not None and spec.urgency == "emergency"

    def _urgency(self, name: str) -> str:
        spec = self.specs.get(name)
        # A red flag routed to an intent the file does not define is still an emergency.
        return spec.urgency if spec is not None else "emergency"

    def _requests(
        self,
        tokens: list[str],
        negated: list[bool],
        correction_at: int,
        ranked: tuple[IntentScore, ...],
    ) -> tuple[str, ...]:
        """The separate requests of this turn in the order they were made (at most two)."""
        if not ranked or ranked[0].confidence < self.floor:
            return ()
        top = ranked[0].intent
        found: list[tuple[int, str]] = []
        model = self.semantic
        start = correction_at if correction_at > 0 else 0
        confident = {s.intent for s in ranked if s.confidence >= self.floor}
        # Two requests need two intents above the floor; only then are the clauses worth a look.
        if (
            model is not None
            and len(confident) > 1
            and any(t in _REQUEST_BOUNDARIES for t in tokens[start:])
        ):
            clause: list[str] = []
            clause_start = start
            for i in range(start, len(tokens) + 1):
                tok = tokens[i] if i < len(tokens) else None
                if tok is None or tok in _REQUEST_BOUNDARIES:
                    content = [t for t in clause if t not in STOPWORDS]
                    if len(content) >= 2:
                        # A clause of a turn already judged relevant: no nearest-sentence pass.
                        result = model.score(clause, nearest=False, relevance=False)
                        if result.scores and result.scores[0].probability >= CLAUSE_MIN:
                            found.append((clause_start, result.scores[0].intent))
                    clause, clause_start = [], i + 1
                    continue
                if not negated[i]:
                    clause.append(tok)
        ordered: list[str] = []
        for _, intent in sorted(found):
            if intent in confident and intent not in ordered:
                ordered.append(intent)
        if len(ordered) < 2:
            if correction_at > 0:
                return (top,)  # what came before a correction was taken back, not a request
            # Lexical route: two intents each above the floor on separate words.
            second = ranked[1] if len(ranked) > 1 else None
            if second is not None and second.confidence >= self.floor:
                pair = sorted([ranked[0], second], key=lambda s: s.position)
                return tuple(s.intent for s in pair)
            return (top,)
        if top not in ordered[:2] and self._urgency(top) == "emergency":
            return (top, ordered[0])
        return tuple(ordered[:2])

    @staticmethod
    def _seg_factors(segments: list[tuple[list[str], float, int]]) -> Any:
        return np.array([seg[1] for seg in segments], dtype=np.float32)

    # -- ranking ----------------------------------------------------------------------------

    def _rank(
        self, evidence: dict[str, _Evidence], screened: bool = False, denied: bool = False
    ) -> tuple[IntentScore, ...]:
        """``screened``: the emergency screen ran. It then owns recall for emergencies, and the
        clinic's emergency keywords alone ("seizure", "stroke") no longer make a call an
        emergency: past events and topics ("my seizure medication", "after my stroke last year")
        are what the screen tells apart, so a keyword needs the classifier to agree."""
        raw: dict[str, float] = {}
        for name, e in evidence.items():
            remaining = 1.0
            for p in e.positive:
                remaining *= 1.0 - min(p, 1.0)
            score = (1.0 - remaining) * (1.0 - e.negative)
            if score > 0.01:
                raw[name] = score
        scored: list[tuple[tuple[int, float, int], IntentScore]] = []
        # The classifier's surest reading among all intents, for an urgent keyword to yield to.
        surest = {name: e.semantic for name, e in evidence.items()}
        for name, e in evidence.items():
            score = raw.get(name, 0.0)
            lexical = 0.0
            if score > 0.0:
                mine = e.tokens
                competition = 0.0
                for other, other_score in raw.items():
                    if other == name:
                        continue
                    theirs = evidence[other].tokens
                    overlap = len(mine & theirs) / len(mine) if mine and theirs else 1.0
                    competition += other_score * (0.15 + 0.6 * overlap)
                lexical = score * score / (score + competition)
            semantic = e.semantic * (1.0 - 0.5 * e.negative)
            urgency = self._urgency(name)
            # The classifier generalises; the clinic's keywords are precise but brittle (a
            # keyword heard in another request's sentence), so they count at LEXICAL_SHARE.
            # Where the built-in corpus backs an intent the clinic's words are one voice among
            # several; for the clinic's own intents they are all there is, and count fully.
            share = LEXICAL_SHARE if self._backed(name) else 1.0
            keyword_emergency = score >= min(EMERGENCY_EVIDENCE, self.floor)
            if urgency == "emergency" and screened and e.red_flag <= 0.0:
                keyword_emergency = keyword_emergency and semantic >= EMERGENCY_AGREE and not denied
                if not keyword_emergency:
                    share *= UNSCREENED_KEYWORD_SHARE
            semantic_emergency = semantic >= (SEMANTIC_EMERGENCY_DENIED if denied else SEMANTIC_EMERGENCY)
            confidence = 1.0 - (1.0 - share * lexical) * (1.0 - semantic)
            strength = max(score, semantic)
            if strength <= 0.01 and e.red_flag <= 0.0:
                continue
            boost = 0
            if e.red_flag > 0.0:
                boost = 3
                confidence = max(confidence, e.red_flag, self.floor)
            elif urgency == "emergency" and (keyword_emergency or semantic_emergency):
                boost = 2
                confidence = max(confidence, strength, self.floor)
            elif urgency == "emergency" and screened:
                # No red flag, no agreeing keyword and a classifier short of sure: the screen is
                # the emergency authority, and such turns are mostly urgent or routine ("a deep
                # cut, the bleeding stopped"). The intent keeps a share of its confidence: it
                # can still win when nothing else fits.
                confidence *= UNFLAGGED_EMERGENCY_SHARE

            elif urgency == "urgent" and (score >= URGENT_EVIDENCE or semantic >= URGENT_EVIDENCE) and not (
                semantic < URGENT_AGREE
                and any(v >= URGENT_YIELD for other, v in surest.items() if other != name)
            ):
                boost = 1
                confidence = max(
                    confidence, min(strength, 0.95) if strength >= self.floor else confidence
                )
            item = IntentScore(
                name,
                round(min(confidence, 1.0), 4),
                round(strength, 4),
                urgency,
                tuple(e.notes),
                e.position if e.position < (1 << 30) else 0,
            )
            scored.append(((-boost, -item.confidence, item.position), item))
        scored.sort(key=lambda pair: pair[0])
        return tuple(item for _, item in scored)
