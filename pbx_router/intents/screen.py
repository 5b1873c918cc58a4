"""The emergency screen: a recall-first red-flag detector run on every utterance before ranking.

It is built into the product and independent of the clinic's intent lists: the lexicon ships in
``data/red_flags.yaml`` and a rules file can only *add* to it (words, flags, where a flag goes),
never switch it off or remove a built-in flag.

How it reads a caller (all precompiled when the screen is built, so one utterance costs well
under a millisecond):
  * words are compared on their surface form, their lemma (simplemma: "fainted" -> "faint") and a
    phonetic-ish spelling fold (``normalize.fold``: "breath"/"breathe"), with one-letter slips on
    longer words and split words ("over dose") tolerated, because transcripts are noisy;
  * synonym classes (CHEST = chest, heart, breastbone...; CHEST_SX = pain, pressure, tight,
    crushing, elephant...) combine by short-distance co-occurrence (a body part within a few
    words of a symptom, an amount near a medicine, a chemical near "swallowed");
  * negation is scoped the way NegEx does it: a trigger ("no", "not", "denies", "without") covers
    the next few words up to a terminator ("but", "and now", punctuation); "... went away" covers
    the words before it; a negation word that is part of a symptom ("not breathing", "won't stop",
    "no pulse") or of uncertainty ("not sure") negates nothing. History ("last year", "after my
    heart attack") and topics ("seizure medication", "results of my chest x-ray") make a match
    not current; such matches are kept in ``dismissed`` for the trace, never silently dropped.
  * when unsure, flag: a red flag heard only in an n-best alternative, or on words the recogniser
    was unsure of, still counts (``source`` says where), and an unsure negation word is ignored.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from itertools import product
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pbx_router.intents.lemma import lemma, warm_up
from pbx_router.intents.normalize import FILLERS, fold, normalize

Category = Literal["medical", "crisis"]
CATEGORIES: tuple[str, ...] = ("medical", "crisis")
# Where a red flag goes when the clinic does not say: the example clinic's intent names.
DEFAULT_ROUTES: dict[str, str] = {"medical": "emergency", "crisis": "mental_health_crisis"}
# Below this per-word posterior a word is "heard badly": it may still raise a flag, but it may
# not cancel one (an unsure "no" in front of "chest pain" is ignored).
LOW_CONFIDENCE = 0.5
DEFAULT_WINDOW = 6
PRE_NEGATION_WINDOW = 6
POST_NEGATION_WINDOW = 6
HISTORY_WINDOW = 8
TOPIC_BEFORE_WINDOW = 3
# Fuzzy (one-letter) matching only for folded words at least this long: short words collide.
FUZZY_MIN = 6
MAX_TOKENS = 200
MAX_COMBOS = 24
_TOKEN_CACHE_MAX = 50_000

RESERVED_CLASSES = frozenset(
    {
        "NEG_PRE",
        "NEG_POST",
        "NEG_PSEUDO",
        "TERMINATOR",
        "NO_ANSWER",
        "HIST",
        "HIST_PRE",
        "PRESENT",
        "RECUR",
        "TOPIC_AFTER",
        "TOPIC_BEFORE",
        "TOPIC_CRISIS",
        "IGNORE",
    }
)
# "... went away" is cancelled by a later "came back".
_RECUR_DEFAULT = (
    "came back",
    "coming back",
    "back again",
    "is back",
    "returned",
    "started again",
    "again now",
    "worse again",
    "getting worse",
)

# What may follow "is gone" / "got better" when it does mean the symptom ended.
_POST_FOLLOWERS = frozenset(
    "now away completely totally entirely already thank thanks and so but by after since "
    "on off i he she it we they today yesterday this last though for".split()
)
_SPECIAL_WORDS: dict[str, list[str]] = {"od'd": ["overdosed"], "o.d.": ["overdose"], "x-ray": ["xray"]}

# "er" stays a word here: "the ER sent me home" matters more than a hesitation.
_FILLERS = FILLERS - {"er"}

_MARKERS = re.compile(r"\[[^\]]*\]|<[^>]*>")
# A number is a token of its own; letters and digits run together ("0no", "2nd") are one token,
# as normalize() has them: never a word of the lexicon nor a negation read out of noise.
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?![^\W_])|[^\W_]+(?:['\u2019][^\W\d_]+)*|[.,;:!?]+")
_PRONOUN_IS = re.compile(r"^(he|she|who|where|how|baby|mom|mum|dad)['\u2019]s$")
_CLASS_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_RULE_WINDOW = re.compile(r"\s*~\s*(\d+)\s*$")


# --------------------------------------------------------------------------------------------
# What the clinic may write (rules file ``red_flags:``)
# --------------------------------------------------------------------------------------------


class CustomRedFlag(BaseModel):
    """A red flag the clinic adds on top of the built-in ones."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, description="Plain words shown in traces and to staff.")
    category: Category = Field(
        default="medical",
        description="medical (911 instruction + on-call person) or crisis (crisis line + person).",
    )
    words: list[str] = Field(
        min_length=1,
        description="Words or phrases; 'a + b' means both within 6 words, 'a & b ~4' either"
        " order within 4; UPPER-CASE names use a built-in synonym class (e.g. CHEST).",
    )

    @field_validator("words")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)


class RedFlagsSpec(BaseModel):
    """Additions to the built-in emergency screen.

    The screen runs on every utterance before intent ranking and cannot be switched off: this
    section can only add words and red flags and choose where each red flag goes. No built-in
    red flag can be removed or weakened.
    """

    model_config = ConfigDict(extra="forbid")

    words: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra words/phrases per red flag id (built-in or added under `flags`).",
    )
    flags: dict[str, CustomRedFlag] = Field(
        default_factory=dict, description="New red flags: id -> label, category, words."
    )
    routes: dict[str, str] = Field(
        default_factory=dict,
        description="Red flag id or category (medical, crisis) -> intent with urgency emergency."
        " Default: medical -> emergency, crisis -> mental_health_crisis.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_off_switch(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in ("enabled", "enable", "disabled", "disable", "off", "remove", "exclude"):
                if key in value:
                    raise ValueError(
                        f"'{key}': the emergency screen cannot be switched off or reduced;"
                        " red_flags can only add words, add flags and set routes"
                    )
        return value

    @model_validator(mode="after")
    def _known_ids(self) -> RedFlagsSpec:
        builtin = builtin_flag_ids()
        problems: list[str] = []
        for flag in self.flags:
            if flag in builtin:
                problems.append(f"flags.{flag}: '{flag}' is a built-in red flag; add words under `words` instead")
            if flag in CATEGORIES:
                problems.append(f"flags.{flag}: '{flag}' is a category name")
        known = builtin | set(self.flags)
        for flag, words in self.words.items():
            if flag not in known:
                problems.append(f"words.{flag}: unknown red flag '{flag}' (known: {', '.join(sorted(known))})")
            else:
                try:
                    _check_patterns(words)
                except ValueError as exc:
                    problems.append(f"words.{flag}: {exc}")
        for key in self.routes:
            if key not in known and key not in CATEGORIES:
                problems.append(f"routes.{key}: not a red flag id or category (medical, crisis)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def known_flags(self) -> set[str]:
        return builtin_flag_ids() | set(self.flags)


def _check_patterns(patterns: Iterable[str]) -> list[str]:
    classes = set(_builtin_data()["classes"])
    out = []
    for text in patterns:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a red-flag word must be non-empty text")
        _parse_rule(text, classes)
        out.append(text)
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedFlagFinding:
    """One red flag the caller's words raised."""

    flag: str
    label: str
    category: Category
    words: tuple[str, ...]
    start: int  # character offsets into the text named by ``source``
    end: int
    score: float
    source: str  # "best", "best:low_confidence", "alternative:N" (1 = first alternative)
    route: str | None
    rule: str = ""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "label": self.label,
            "category": self.category,
            "words": list(self.words),
            "score": round(self.score, 3),
            "source": self.source,
            "route": self.route,
            "rule": self.rule,
            **({"notes": list(self.notes)} if self.notes else {}),
        }


@dataclass(frozen=True, slots=True)
class Dismissal:
    """A red-flag match the screen decided is not current, with why (for the trace)."""

    flag: str
    words: tuple[str, ...]
    reason: Literal["negated", "resolved", "historical", "topic"]
    trigger: str

    def describe(self) -> str:
        return f"{self.flag}: '{' '.join(self.words)}' {self.reason} by '{self.trigger}'"


@dataclass(frozen=True, slots=True)
class ScreenResult:
    text: str
    findings: tuple[RedFlagFinding, ...] = ()
    dismissed: tuple[Dismissal, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def denied(self) -> tuple[str, ...]:
        """Red flags mentioned but not current (denied, resolved, past, or only a topic)."""
        return tuple(d.describe() for d in self.dismissed)

    @property
    def historical(self) -> tuple[str, ...]:
        return tuple(d.describe() for d in self.dismissed if d.reason == "historical")

    @property
    def top(self) -> RedFlagFinding | None:
        return self.findings[0] if self.findings else None

    @property
    def routes(self) -> tuple[str, ...]:
        """Intents the findings go to, most urgent first, without repeats."""
        out: list[str] = []
        for f in self.findings:
            if f.route is not None and f.route not in out:
                out.append(f.route)
        return tuple(out)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.category for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "findings": [f.to_dict() for f in self.findings],
            "denied": list(self.denied),
        }


# --------------------------------------------------------------------------------------------
# Lexicon loading and compilation
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _builtin_data() -> dict[str, Any]:
    raw = resources.files("pbx_router.intents").joinpath("data/red_flags.yaml").read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader, C version when built
    if not isinstance(data, dict) or "classes" not in data or "flags" not in data:
        raise RuntimeError("red_flags.yaml: needs 'classes' and 'flags'")
    for name, members in data["classes"].items():
        bad = [m for m in members if not isinstance(m, str)]
        if bad:
            # YAML 1.1 reads an unquoted no/off as false: a silent hole in the lexicon.
            raise RuntimeError(f"red_flags.yaml: {name} has non-text members {bad!r}; quote them")
    return data


def builtin_flag_ids() -> set[str]:
    """Ids of the built-in red flags (none of which a rules file can remove)."""
    return set(_builtin_data()["flags"])


@dataclass(frozen=True, slots=True)
class _Rule:
    text: str
    groups: tuple[tuple[str, ...], ...]  # each group: slot names (class names or literals)
    ordered: bool
    window: int


def _parse_rule(text: str, classes: set[str]) -> _Rule:
    """'A + b c ~5' -> groups [[A], [b, c]], ordered, window 5. Raises ValueError."""
    body = text.strip()
    window = DEFAULT_WINDOW
    m = _RULE_WINDOW.search(body)
    if m:
        window = int(m.group(1))
        body = body[: m.start()]
    has_plus, has_amp = " + " in f" {body} ", " & " in f" {body} "
    if has_plus and has_amp:
        raise ValueError(f"{text!r}: use either '+' (in order) or '&' (any order), not both")
    sep = "&" if has_amp else "+"
    groups: list[tuple[str, ...]] = []
    for part in body.split(sep):
        slots = tuple(part.split())
        if not slots:
            raise ValueError(f"{text!r}: empty group")
        for slot in slots:
            if _CLASS_NAME.match(slot):
                if slot not in classes:
                    raise ValueError(f"{text!r}: unknown word class {slot}")
                if slot in RESERVED_CLASSES:
                    raise ValueError(f"{text!r}: {slot} is reserved for negation and context")
        groups.append(slots)
    if len(groups) > 1 and window < sum(len(g) for g in groups):
        raise ValueError(f"{text!r}: window ~{window} is shorter than the words it needs")
    return _Rule(text=text, groups=tuple(groups), ordered=sep == "+", window=window)


@lru_cache(maxsize=8192)
def _words_of(text: str) -> tuple[str, ...]:
    """Tokenise lexicon or caller text the same way (contractions expanded, fillers gone)."""
    if text.isalpha() and text.islower():
        return (text,) if text not in _FILLERS else ()
    return tuple(w for w, _, _ in _tokenise(text)[0])


# Recognisers and hurried typists drop the apostrophe: "dont", "cant", "hes".
_BARE_CONTRACTIONS: dict[str, list[str]] = {
    "cant": ["can", "not"],
    "wont": ["will", "not"],
    "dont": ["do", "not"],
    "doesnt": ["does", "not"],
    "didnt": ["did", "not"],
    "isnt": ["is", "not"],
    "arent": ["are", "not"],
    "wasnt": ["was", "not"],
    "werent": ["were", "not"],
    "havent": ["have", "not"],
    "hasnt": ["has", "not"],
    "hadnt": ["had", "not"],
    "couldnt": ["could", "not"],
    "wouldnt": ["would", "not"],
    "shouldnt": ["should", "not"],
    "aint": ["am", "not"],
    "cannot": ["can", "not"],
    "hes": ["he", "is"],
    "shes": ["she", "is"],
    "im": ["i", "am"],
    "ive": ["i", "have"],
    "youre": ["you", "are"],
    "theyre": ["they", "are"],
    "thats": ["that", "is"],
    "whats": ["what", "is"],
    "theres": ["there", "is"],
    "wanna": ["want", "to"],
    "gonna": ["going", "to"],
}


def _expand(word: str) -> list[str]:
    special = _SPECIAL_WORDS.get(word)
    if special is not None:
        return special
    bare = _BARE_CONTRACTIONS.get(word)
    if bare is not None:
        return bare
    if "'" in word or "\u2019" in word:
        m = _PRONOUN_IS.match(word)
        if m:
            return [m.group(1), "is"]
        return normalize(word)
    if word in _FILLERS:
        return []
    return [word]


def _tokenise(text: str) -> tuple[list[tuple[str, int, int]], list[int], list[int]]:
    """Tokens with character spans, clause ids (punctuation ends a clause) and, per token, the
    index of the whitespace-separated raw word it came from (to align word confidences)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = _MARKERS.sub(lambda m: " " * len(m.group(0)), text)
    lowered = text.lower()
    tokens: list[tuple[str, int, int]] = []
    clauses: list[int] = []
    raw_index: list[int] = []
    clause = 0
    # Raw word index: count whitespace runs before each token.
    ws_starts = [m.start() for m in re.finditer(r"\S+", lowered)]
    wi = 0
    for m in _TOKEN.finditer(lowered):
        tok = m.group(0)
        while wi + 1 < len(ws_starts) and ws_starts[wi + 1] <= m.start():
            wi += 1
        if tok[0] in ".,;:!?":
            if tok != "." or not tokens or not tokens[-1][0].isdigit():
                clause += 1
            continue
        for piece in _expand(tok):
            tokens.append((piece, m.start(), m.end()))
            clauses.append(clause)
            raw_index.append(wi)
        if len(tokens) >= MAX_TOKENS:
            break
    return tokens, clauses, raw_index


def _deletes(key: str) -> set[str]:
    return {key[:i] + key[i + 1 :] for i in range(len(key))}


@lru_cache(maxsize=65536)
def _fold(token: str) -> str:
    return fold(token)


# Not lemmatised: simplemma maps "me" to "i", "better" to "good", "was" to "be", which makes
# unrelated phrases collide ("not know me" / "not know why i"). Lexicon entries spell these out.
_NO_LEMMA = frozenset(
    "i me my mine we us our you your he him his she her hers it its they them their "
    "am is are was were be been being has have had having do does did done "
    "get gets got gotten getting go goes going gone went "
    "better best worse worst more most less least".split()
)


def _keys(token: str) -> set[str]:
    """Surface, lemma and (for longer words) spelling folds. Short words are not folded: their
    folds collide ("pain" and "pan")."""
    if token in _NO_LEMMA:
        return {token}
    lem = lemma(token)
    keys = {token, lem}
    for w in (token, lem):
        if len(w) >= 5:
            f = _fold(w)
            if len(f) >= 4:
                keys.add(f)
    return keys


@dataclass(frozen=True, slots=True)
class _Flag:
    id: str
    label: str
    category: Category
    route: str | None


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    flag: str
    text: str
    groups: tuple[tuple[int, ...], ...]  # class ids per group
    ordered: bool
    window: int
    score: float
    unless: tuple[int, int] | None  # (class id, window)
    needs: frozenset[int]
    topical: bool = False  # a condition name: "seizure medication" makes it a topic


@dataclass(frozen=True, slots=True)
class _Occ:
    start: int  # token index, inclusive
    end: int  # token index, exclusive
    positions: tuple[int, ...]
    fuzzy: bool


class _Lexicon:
    """Everything precompiled from the built-in YAML plus the clinic's additions."""

    def __init__(self, data: Mapping[str, Any], extra: RedFlagsSpec | None) -> None:
        warm_up()
        self._word_ids: dict[tuple[str, bool], int] = {}
        self._first: dict[int, str] = {}
        self.exact: dict[str, set[int]] = {}
        self.loose: dict[str, set[int]] = {}
        self.fuzzy_keys: dict[str, set[int]] = {}
        self.fuzzy_deletes: dict[str, set[int]] = {}
        self.compound: dict[str, set[int]] = {}
        self.class_ids: dict[str, int] = {}
        self.class_names: list[str] = []
        # One-word members: word id -> class ids. Longer members are indexed by their first
        # two words, so a common first word ("not", "my") costs a dict lookup, not a walk.
        self.single: dict[int, list[int]] = {}
        self.pairs: dict[tuple[int, int], list[tuple[int, tuple[frozenset[int], ...]]]] = {}

        classes: dict[str, list[str]] = {k: list(v) for k, v in data["classes"].items()}
        classes.setdefault("RECUR", list(_RECUR_DEFAULT))
        for name, members in classes.items():
            cid = self._class(name)
            for member in members:
                self._add_member(cid, str(member))
        self.reserved = {name: self.class_ids[name] for name in RESERVED_CLASSES if name in self.class_ids}

        self.topic_names = frozenset(data.get("topic_names", ()))
        self.flags: dict[str, _Flag] = {}
        self.rules: list[_CompiledRule] = []
        routes = dict(extra.routes) if extra else {}
        flag_specs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in data["flags"].items()}
        if extra is not None:
            for fid, custom in extra.flags.items():
                flag_specs[fid] = {
                    "label": custom.label,
                    "category": custom.category,
                    "match": list(custom.words),
                }
            for fid, words in extra.words.items():
                flag_specs[fid]["match"] = [*flag_specs[fid].get("match", []), *words]
        for fid, spec in flag_specs.items():
            category: Category = spec.get("category", "medical")
            route = routes.get(fid) or routes.get(category) or DEFAULT_ROUTES[category]
            self.flags[fid] = _Flag(fid, str(spec.get("label", fid)), category, route)
            for item in spec.get("match", []):
                if isinstance(item, dict):
                    text, score, unless = str(item["rule"]), item.get("score"), item.get("unless")
                else:
                    text, score, unless = str(item), None, None
                self.rules.append(self._compile_rule(fid, text, score, unless))
        self.rules_by_class: dict[int, list[int]] = {}
        for i, rule in enumerate(self.rules):
            anchor = min(rule.needs)
            self.rules_by_class.setdefault(anchor, []).append(i)

    # -- words and classes -------------------------------------------------------------------

    def _class(self, name: str) -> int:
        cid = self.class_ids.get(name)
        if cid is None:
            cid = len(self.class_names)
            self.class_ids[name] = cid
            self.class_names.append(name)
        return cid

    def _word(self, word: str, exact: bool) -> int:
        key = (word, exact)
        wid = self._word_ids.get(key)
        if wid is not None:
            return wid
        wid = len(self._word_ids)
        self._word_ids[key] = wid
        self.exact.setdefault(word, set()).add(wid)
        if not exact:
            for k in _keys(word):
                self.loose.setdefault(k, set()).add(wid)
            f = _fold(word)
            self._first[wid] = f[:1]
            if len(f) >= FUZZY_MIN and not word.isdigit():
                self.fuzzy_keys.setdefault(f, set()).add(wid)
                for d in _deletes(f):
                    self.fuzzy_deletes.setdefault(d, set()).add(wid)
            if len(word) >= 5 and word.isalpha():
                self.compound.setdefault(word, set()).add(wid)
        return wid

    def _member_sets(self, phrase: str) -> tuple[frozenset[int], ...]:
        sets: list[frozenset[int]] = []
        for raw in phrase.split():
            alts = raw.split("|")
            exact = raw.startswith("=")
            # A raw word may expand to several tokens ("can't" -> can not).
            expanded = [_words_of(a.lstrip("=")) for a in alts]
            if len(alts) == 1 and len(expanded[0]) > 1:
                sets.extend(frozenset({self._word(w, exact)}) for w in expanded[0])
                continue
            ids = {self._word(ws[0], exact) for ws in expanded if ws}
            if ids:
                sets.append(frozenset(ids))
        return tuple(sets)

    def _add_member(self, cid: int, phrase: str) -> None:
        sets = self._member_sets(phrase)
        if not sets:
            return
        for wid in sets[0]:
            if len(sets) == 1:
                if cid not in self.single.get(wid, ()):
                    self.single.setdefault(wid, []).append(cid)
                continue
            for wid2 in sets[1]:
                self.pairs.setdefault((wid, wid2), []).append((cid, sets[2:]))

    def _slot_class(self, slot: str) -> int:
        if _CLASS_NAME.match(slot):
            return self.class_ids[slot]
        name = f"'{slot}'"
        if name not in self.class_ids:
            cid = self._class(name)
            # "a|b_c": either "a" or the phrase "b c".
            for alt in slot.split("|"):
                self._add_member(cid, alt.replace("_", " "))
        return self.class_ids[name]

    def _compile_rule(self, flag: str, text: str, score: float | None, unless: str | None) -> _CompiledRule:
        parsed = _parse_rule(text, set(self.class_ids))
        groups = tuple(tuple(self._slot_class(s) for s in g) for g in parsed.groups)
        unless_c: tuple[int, int] | None = None
        if unless:
            m = _RULE_WINDOW.search(unless)
            uwin = int(m.group(1)) if m else DEFAULT_WINDOW
            uname = unless[: m.start()].strip() if m else unless.strip()
            unless_c = (self._slot_class(uname), uwin)
        if score is None:
            score = 0.95 if len(groups) == 1 else 0.85
        topical = (
            len(parsed.groups) == 1
            and len(parsed.groups[0]) == 1
            and parsed.groups[0][0] in self.topic_names
        )
        return _CompiledRule(
            flag=flag,
            text=text,
            groups=groups,
            ordered=parsed.ordered,
            window=parsed.window,
            score=float(score),
            unless=unless_c,
            needs=frozenset(c for g in groups for c in g),
            topical=topical,
        )

    # -- tokens ------------------------------------------------------------------------------

    def analyse(self, token: str) -> tuple[tuple[int, bool], ...]:
        """Lexicon word ids a caller token can stand for, each with whether it was a slip."""
        ids: set[int] = set(self.exact.get(token, ()))
        for k in _keys(token):
            ids |= self.loose.get(k, set())
        if not ids and token.endswith("in") and len(token) >= 5:
            # A dropped g ("crushin", "bleedin") is not a slip worth a penalty.
            return self.analyse(token + "g")
        out = [(w, False) for w in ids]
        if not ids:
            f = _fold(token)
            if len(f) >= FUZZY_MIN and not token.isdigit():
                # One letter missing or one extra, same first letter. Substitutions are left
                # out: they turn "infection" into "injection" and "stolen" into "swollen".
                fuzzy: set[int] = set(self.fuzzy_deletes.get(f, ()))
                for d in _deletes(f):
                    fuzzy |= self.fuzzy_keys.get(d, set())
                out.extend((w, True) for w in fuzzy if self._first[w] == f[0])
        return tuple(out)


# --------------------------------------------------------------------------------------------
# The screen
# --------------------------------------------------------------------------------------------


@dataclass
class _Match:
    rule: _CompiledRule
    positions: tuple[int, ...]
    fuzzy: bool

    @property
    def start(self) -> int:
        return self.positions[0]

    @property
    def last(self) -> int:
        return self.positions[-1]


@dataclass
class _Utterance:
    tokens: list[tuple[str, int, int]]
    clauses: list[int]
    confidences: list[float | None]
    occ: dict[int, list[_Occ]] = field(default_factory=dict)
    segments: list[int] = field(default_factory=list)


class EmergencyScreen:
    """Built once per rules version (compiling the lexicon takes about half a second and is
    shared between screens with the same additions); ``screen()`` is pure and thread-safe."""

    def __init__(self, extra: RedFlagsSpec | None = None) -> None:
        self._lex = _lexicon_for(extra)
        self._cache: dict[str, tuple[tuple[int, bool], ...]] = {}
        self._lock = threading.Lock()

    @property
    def flags(self) -> dict[str, tuple[str, str, str | None]]:
        """flag id -> (label, category, route)."""
        return {f.id: (f.label, f.category, f.route) for f in self._lex.flags.values()}

    def screen(
        self,
        text: str,
        alternatives: Sequence[str] = (),
        word_confidences: Sequence[float] | None = None,
    ) -> ScreenResult:
        best: dict[str, RedFlagFinding] = {}
        findings, dismissed = self._screen_one(text, "best", word_confidences)
        for f in findings:
            _keep_best(best, f)
        seen = {text.strip().lower()}
        for i, alt in enumerate(alternatives, start=1):
            key = alt.strip().lower()
            if not key or key in seen:
                continue
            seen.add(key)
            alt_findings, _ = self._screen_one(alt, f"alternative:{i}", None)
            for f in alt_findings:
                if f.flag not in best:
                    _keep_best(best, f)
        ordered = sorted(
            best.values(), key=lambda f: (f.category != "medical", -f.score, f.start)
        )
        flagged = {f.flag for f in ordered}
        return ScreenResult(
            text=text,
            findings=tuple(ordered),
            dismissed=tuple(d for d in dismissed if d.flag not in flagged),
        )

    # -- one transcript ----------------------------------------------------------------------

    def _analyse(self, token: str) -> tuple[tuple[int, bool], ...]:
        hit = self._cache.get(token)
        if hit is None:
            hit = self._lex.analyse(token)
            with self._lock:
                if len(self._cache) >= _TOKEN_CACHE_MAX:
                    self._cache.clear()
                self._cache[token] = hit
        return hit

    def _screen_one(
        self, text: str, source: str, word_confidences: Sequence[float] | None
    ) -> tuple[list[RedFlagFinding], list[Dismissal]]:
        tokens, clauses, raw_index = _tokenise(text)
        if not tokens:
            return [], []
        confs: list[float | None] = [None] * len(tokens)
        if word_confidences is not None:
            n_raw = len(text.split())
            if len(word_confidences) == n_raw:
                confs = [float(word_confidences[r]) for r in raw_index]
        u = _Utterance(tokens, clauses, confs)
        u.occ = self._occurrences(u)
        # Segments: clauses further cut at terminators ("but", "and now"); negation, history
        # and topic context never reach across one.
        seg = list(clauses)
        for t in u.occ.get(self._lex.reserved.get("TERMINATOR", -1), []):
            for k in range(t.start, len(seg)):
                seg[k] += 1
        u.segments = seg
        matches = self._matches(u)
        if not matches:
            return [], []
        used: set[int] = set()
        for m in matches:
            used.update(m.positions)
        findings: list[RedFlagFinding] = []
        dismissed: list[Dismissal] = []
        for m in matches:
            verdict = self._context(u, m, used)
            flag = self._lex.flags[m.rule.flag]
            words = tuple(tokens[p][0] for p in m.positions)
            if verdict is not None and not verdict[2]:
                reason, trigger, _ = verdict
                d = Dismissal(flag.id, words, reason, trigger)  # type: ignore[arg-type]
                if d not in dismissed:
                    dismissed.append(d)
                continue
            notes: list[str] = []
            if verdict is not None:
                notes.append(f"ignored unsure negation '{verdict[1]}'")
            low = any(
                (c := confs[p]) is not None and c < LOW_CONFIDENCE for p in m.positions
            )
            score = m.rule.score * (0.85 if m.fuzzy else 1.0) * (0.9 if low else 1.0)
            if source != "best":
                score *= 0.9
            if m.fuzzy:
                notes.append("matched a near spelling")
            findings.append(
                RedFlagFinding(
                    flag=flag.id,
                    label=flag.label,
                    category=flag.category,
                    words=words,
                    start=tokens[m.start][1],
                    end=tokens[m.last][2],
                    score=round(score, 4),
                    source=f"{source}:low_confidence" if low and source == "best" else source,
                    route=flag.route,
                    rule=m.rule.text,
                    notes=tuple(notes),
                )
            )
        return findings, dismissed

    def _occurrences(self, u: _Utterance) -> dict[int, list[_Occ]]:
        lex = self._lex
        n = len(u.tokens)
        at: list[dict[int, tuple[int, bool]]] = [{} for _ in range(n)]
        words = [t[0] for t in u.tokens]
        for i, w in enumerate(words):
            slot = at[i]
            for wid, fz in self._analyse(w):
                slot[wid] = (i + 1, fz)
            if i + 1 < n:
                # The recogniser split one word in two ("over dose", "x ray").
                for wid in lex.compound.get(w + words[i + 1], ()):
                    slot.setdefault(wid, (i + 2, False))
        occ: dict[int, list[_Occ]] = {}

        def add(cid: int, o: _Occ) -> None:
            lst = occ.setdefault(cid, [])
            if not any(x.positions == o.positions for x in lst):
                lst.append(o)

        single, pairs = lex.single, lex.pairs
        clauses = u.clauses
        for i in range(n):
            ci = clauses[i]
            for wid, (end, fz) in at[i].items():
                first = tuple(range(i, end))
                for cid in single.get(wid, ()):
                    add(cid, _Occ(i, end, first, fz))
                for k in (end, end + 1):
                    if k >= n or clauses[k] != ci:
                        break
                    for wid2, (end2, fz2) in at[k].items():
                        for cid, rest in pairs.get((wid, wid2), ()):
                            second = (*first, *range(k, end2))
                            if not rest:
                                add(cid, _Occ(i, end2, second, fz or fz2))
                                continue
                            found = _follow(at, end2, rest, n, clauses)
                            if found is not None:
                                positions, stop, fz3 = found
                                add(cid, _Occ(i, stop, (*second, *positions), fz or fz2 or fz3))
        ignore = lex.reserved.get("IGNORE")
        # Ignore phrases mask only when said as written ("heart doctor", not "heart attack doctor").
        masks = [
            g for g in (occ.get(ignore, []) if ignore is not None else []) if g.end - g.start == len(g.positions)
        ]
        if masks:
            for cid, lst in occ.items():
                if cid == ignore:
                    continue
                occ[cid] = [
                    o
                    for o in lst
                    if not any(
                        o.start < g.end and g.start < o.end and not (o.start <= g.start and o.end >= g.end)
                        for g in masks
                    )
                ]
        return occ

    def _matches(self, u: _Utterance) -> list[_Match]:
        lex = self._lex
        present = {cid for cid, lst in u.occ.items() if lst}
        out: list[_Match] = []
        group_cache: dict[tuple[int, ...], list[_Occ]] = {}
        for anchor in present:
            for ri in lex.rules_by_class.get(anchor, ()):
                rule = lex.rules[ri]
                if not rule.needs <= present:
                    continue
                groups = []
                for g in rule.groups:
                    occs = group_cache.get(g)
                    if occs is None:
                        occs = _group_occurrences(u.occ, g, u.clauses)
                        group_cache[g] = occs
                    if not occs:
                        break
                    groups.append(occs)
                else:
                    for positions, fz in _combine(groups, rule.ordered, rule.window):
                        if rule.unless is not None and _near(u.occ.get(rule.unless[0], ()), positions, rule.unless[1]):
                            continue
                        out.append(_Match(rule, positions, fz))
        return out

    def _context(
        self, u: _Utterance, m: _Match, used: set[int]
    ) -> tuple[str, str, bool] | None:
        """(reason, trigger words, overridden) when context says the match is not current;
        overridden=True means it would be, but the trigger was heard with low confidence."""
        lex = self._lex
        r = lex.reserved
        occ = u.occ
        clauses = u.segments
        words = [t[0] for t in u.tokens]
        pos = m.positions
        category = lex.flags[m.rule.flag].category
        unsure: tuple[str, str, bool] | None = None

        def text_of(o: _Occ) -> str:
            return " ".join(words[p] for p in o.positions)

        def low(o: _Occ) -> bool:
            return any((c := u.confidences[p]) is not None and c < LOW_CONFIDENCE for p in o.positions)

        pseudo = occ.get(r.get("NEG_PSEUDO", -1), [])
        answers = occ.get(r.get("NO_ANSWER", -1), [])
        # Pre-negation: "no chest pain", "denies any bleeding", "isn't hurting".
        for t in occ.get(r.get("NEG_PRE", -1), []):
            if any(p in used for p in t.positions):
                continue
            if any(s.start <= t.start and t.end <= s.end for s in pseudo):
                continue
            if words[t.start] == "no" and t.end - t.start == 1 and any(a.start == t.end for a in answers):
                continue
            c = clauses[t.end - 1]
            if not any(t.end <= p < t.end + PRE_NEGATION_WINDOW and clauses[p] == c for p in pos):
                continue
            if _terminated(occ, r, t.end, min(p for p in pos if p >= t.end)):
                continue
            if low(t):
                unsure = ("negated", text_of(t), True)
                continue
            return ("negated", text_of(t), False)
        # Post-negation: "the chest pain went away" (unless it "came back").
        recur = occ.get(r.get("RECUR", -1), [])
        for t in occ.get(r.get("NEG_POST", -1), []):
            if any(p in used for p in t.positions):
                continue
            if any(t.end <= p <= t.end + 2 for p in pos):
                continue  # "her face has gone droopy": the change itself, not its end
            if any(s.start <= t.start and t.end <= s.end for s in pseudo):
                continue  # "not getting better"
            if t.end < len(words) and clauses[t.end] == clauses[t.end - 1] and words[t.end] not in _POST_FOLLOWERS:
                continue  # "he's gone really pale": a change of state, not a resolution
            c = clauses[t.start]
            if not any(t.start - POST_NEGATION_WINDOW <= p < t.start and clauses[p] == c for p in pos):
                continue
            if any(o.start >= t.end for o in recur):
                continue
            if low(t):
                unsure = ("resolved", text_of(t), True)
                continue
            return ("resolved", text_of(t), False)
        # History: "last year", "after my heart attack", "history of" -- unless a marker of
        # the present ("again", "right now") in the same segment is nearer the match.
        c0 = clauses[pos[0]]

        def distance(o: _Occ) -> int:
            return min(abs(o.start - pos[-1]), abs(pos[0] - (o.end - 1)))

        present = [
            distance(o)
            for o in occ.get(r.get("PRESENT", -1), [])
            if clauses[o.start] == c0 and set(o.positions).isdisjoint(pos)
        ]
        nearest_present = min(present) if present else 1 << 30
        for t in occ.get(r.get("HIST", -1), []):
            if clauses[t.start] != c0 and clauses[t.end - 1] != c0:
                continue
            d = distance(t)
            if d <= HISTORY_WINDOW and d < nearest_present:
                return ("historical", text_of(t), False)
        for t in occ.get(r.get("HIST_PRE", -1), []):
            if clauses[t.end - 1] == c0 and 0 <= pos[0] - t.end < PRE_NEGATION_WINDOW:
                if pos[0] - t.end < nearest_present:
                    return ("historical", text_of(t), False)
        # Topic, not symptom: "seizure medication", "results of my chest x-ray". Crisis words
        # only for a few program/paperwork words: a caller asking about suicide is at risk.
        pset = set(pos)
        if category == "crisis" and m.rule.topical:
            for t in occ.get(r.get("TOPIC_CRISIS", -1), []):
                if t.start == pos[-1] + 1 and pset.isdisjoint(t.positions):
                    return ("topic", text_of(t), False)
        if category == "medical":
            if m.rule.topical:
                for t in occ.get(r.get("TOPIC_AFTER", -1), []):
                    if t.start - 1 in pset and pset.isdisjoint(t.positions):
                        return ("topic", text_of(t), False)
            for t in occ.get(r.get("TOPIC_BEFORE", -1), []):
                gap = pos[0] - t.end
                if 0 <= gap <= TOPIC_BEFORE_WINDOW and clauses[t.end - 1] == c0:
                    return ("topic", text_of(t), False)
        return unsure


def _terminated(occ: Mapping[int, list[_Occ]], r: Mapping[str, int], start: int, stop: int) -> bool:
    """A terminator ("but", "and now") between ``start`` and ``stop`` ends a negation's scope."""
    return any(start <= o.start < stop for o in occ.get(r.get("TERMINATOR", -1), []))


def _follow(
    at: list[dict[int, tuple[int, bool]]],
    start: int,
    rest: tuple[frozenset[int], ...],
    n: int,
    clauses: list[int],
) -> tuple[tuple[int, ...], int, bool] | None:
    """Match the remaining words of a phrase from ``start``, allowing one skipped word
    between neighbours. Returns (positions, end, fuzzy)."""
    positions: list[int] = []
    j = start
    fuzzy = False
    c = clauses[start - 1]
    for ws in rest:
        hit = None
        for k in (j, j + 1):
            if k >= n or clauses[k] != c:
                break
            slot = at[k]
            for wid in ws:
                v = slot.get(wid)
                if v is not None:
                    hit = (k, v)
                    break
            if hit:
                break
        if hit is None:
            return None
        k, (end, fz) = hit
        positions.extend(range(k, end))
        j = end
        fuzzy = fuzzy or fz
    return tuple(positions), j, fuzzy


def _group_occurrences(
    occ: Mapping[int, list[_Occ]], group: tuple[int, ...], clauses: list[int]
) -> list[_Occ]:
    firsts = occ.get(group[0], [])
    if len(group) == 1:
        return list(firsts)
    out: list[_Occ] = []
    for o in firsts:
        chains = [o]
        for cid in group[1:]:
            nxt = []
            for ch in chains:
                for o2 in occ.get(cid, ()):
                    if ch.end <= o2.start <= ch.end + 1 and clauses[o2.start] == clauses[ch.start]:
                        nxt.append(
                            _Occ(ch.start, o2.end, ch.positions + o2.positions, ch.fuzzy or o2.fuzzy)
                        )
            chains = nxt
            if not chains:
                break
        out.extend(chains)
    return out


def _combine(
    groups: list[list[_Occ]], ordered: bool, window: int
) -> Iterable[tuple[tuple[int, ...], bool]]:
    if len(groups) == 1:
        for o in groups[0]:
            yield o.positions, o.fuzzy
        return
    count = 0
    for combo in product(*groups):
        if ordered and any(combo[i].start < combo[i - 1].end for i in range(1, len(combo))):
            continue
        lo = min(o.start for o in combo)
        hi = max(o.end for o in combo)
        if hi - lo > window:
            continue
        positions = sorted({p for o in combo for p in o.positions})
        if len(positions) != sum(len(o.positions) for o in combo):
            continue  # two groups claimed the same word
        yield tuple(positions), any(o.fuzzy for o in combo)
        count += 1
        if count >= MAX_COMBOS:
            return


def _near(occs: Iterable[_Occ], positions: tuple[int, ...], window: int) -> bool:
    lo, hi = positions[0], positions[-1]
    pset = set(positions)
    return any(
        o.start <= hi + window and o.end - 1 >= lo - window and pset.isdisjoint(o.positions)
        for o in occs
    )


def _keep_best(best: dict[str, RedFlagFinding], f: RedFlagFinding) -> None:
    cur = best.get(f.flag)
    if cur is None or f.score > cur.score:
        best[f.flag] = f


_LEXICONS: dict[str, _Lexicon] = {}
_LEXICONS_LOCK = threading.Lock()


def _lexicon_for(extra: RedFlagsSpec | None) -> _Lexicon:
    """Compiled lexicons are immutable: one per distinct set of clinic additions, shared by
    every screen (a rules reload with unchanged red_flags costs nothing)."""
    key = "" if extra is None else json.dumps(extra.model_dump(mode="json"), sort_keys=True)
    with _LEXICONS_LOCK:
        lex = _LEXICONS.get(key)
        if lex is None:
            if len(_LEXICONS) > 16:
                _LEXICONS.clear()
            lex = _LEXICONS[key] = _Lexicon(_builtin_data(), extra)
        return lex


_SCREENS: dict[str, EmergencyScreen] = {}
_SCREENS_LOCK = threading.Lock()


def screen_for(extra: RedFlagsSpec | None = None) -> EmergencyScreen:
    """The screen for these additions, built once and shared (one per rules version)."""
    key = "" if extra is None else json.dumps(extra.model_dump(mode="json"), sort_keys=True)
    with _SCREENS_LOCK:
        s = _SCREENS.get(key)
        if s is None:
            if len(_SCREENS) > 16:
                _SCREENS.clear()
            s = _SCREENS[key] = EmergencyScreen(extra)
        return s
