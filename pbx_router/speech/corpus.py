"""The domain phrase corpus: what callers say, as normalised sentences for language-model building.

Sources, all packaged: ``data/domain_corpus.txt`` (short requests), the built-in base corpus of
caller utterances per intent (``pbx_router/intents/data/base/*.txt``), medicine names
(``pbx_router/intents/data/medicines.txt``, in the few frames callers put them in), red-flag words
(``data/red_flag_words.txt`` and, when present, every phrase of
``pbx_router/intents/data/red_flags.yaml``); dates, times and digit strings are generated here
because their combinations are regular and numerous. Pure functions, no I/O beyond reading the
packaged files.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

DIGITS = ["oh", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
            "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
            "seventeenth", "eighteenth", "nineteenth", "twentieth", "twenty first",
            "twenty second", "twenty third", "twenty fourth", "twenty fifth", "twenty sixth",
            "twenty seventh", "twenty eighth", "twenty ninth", "thirtieth", "thirty first"]
PARTS_OF_DAY = ["morning", "afternoon", "evening"]
HOURS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve"]
MINUTES = ["o'clock", "fifteen", "thirty", "forty five", "oh five", "ten", "twenty"]

_NON_WORD = re.compile(r"[^a-z' ]+")


def normalise(text: str) -> str:
    """Lower case, words and apostrophes only, single spaces: the form transcripts are compared in."""
    return " ".join(_NON_WORD.sub(" ", text.lower().replace("’", "'")).split())


# Read as package files (not imports): the intents package owns these, speech only reads them.
_INTENTS_DATA = ("intents", "data")
# How callers put a medicine name in a sentence; enough context for the trigrams around it.
# Few frames on purpose: hundreds of names times many frames would outweigh the callers' corpus.
_MEDICINE_FRAMES = ("{}", "my {}", "out of my {}")


def _lines(resource: Traversable) -> list[str]:
    if not resource.is_file():
        return []
    text = resource.read_text("utf-8")
    return [normalise(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _intents_data() -> Traversable:
    return resources.files("pbx_router").joinpath(*_INTENTS_DATA)


def packaged_sentences() -> list[str]:
    return _lines(resources.files("pbx_router.speech").joinpath("data/domain_corpus.txt"))


def base_corpus_sentences() -> list[str]:
    """The built-in caller utterances per intent (written for the classifier; heard here)."""
    base = _intents_data().joinpath("base")
    if not base.is_dir():
        return []
    files = sorted((f for f in base.iterdir() if f.name.endswith(".txt")), key=lambda f: f.name)
    return [line for f in files for line in _lines(f)]


def medicine_sentences() -> list[str]:
    names = _lines(_intents_data().joinpath("medicines.txt"))
    return [frame.format(name) for name in dict.fromkeys(names) for frame in _MEDICINE_FRAMES]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def red_flag_sentences() -> list[str]:
    """Red-flag words: the speech package's list plus every phrase in the screen's YAML (its
    schema does not matter here: any string in it is something a caller may say)."""
    phrases = _lines(resources.files("pbx_router.speech").joinpath("data/red_flag_words.txt"))
    spec = _intents_data().joinpath("red_flags.yaml")
    if spec.is_file():
        import yaml

        try:
            data = yaml.safe_load(spec.read_text("utf-8"))
        except yaml.YAMLError:
            data = None
        # Identifiers (snake_case keys' values such as flag names) are not speech; drop them.
        phrases += [normalise(s) for s in _strings(data) if "_" not in s and len(s) < 80]
    return [p for p in phrases if p]


def _two_digit_numbers() -> Iterator[str]:
    yield from TEENS
    for tens in TENS:
        yield tens
        for unit in DIGITS[2:]:
            yield f"{tens} {unit}"


def generated_sentences() -> Iterator[str]:
    """Dates, times, days and digit strings in the shapes callers use for them."""
    for day in DAYS:
        yield day
        yield f"on {day}"
        yield f"next {day}"
        yield f"this {day}"
        for part in PARTS_OF_DAY:
            yield f"{day} {part}"
            yield f"next {day} {part}"
            yield f"{day} in the {part}"
        for hour, minute in itertools.product(HOURS, MINUTES[:4]):
            yield f"{day} at {hour} {minute}"
        yield f"{day} afternoon at three o'clock"
    for part in PARTS_OF_DAY:
        yield f"tomorrow {part}"
        yield f"in the {part}"
    yield from ["today", "tomorrow", "next week", "this week", "as soon as possible",
                "the day after tomorrow", "any time", "anytime next week"]
    for month, ordinal in itertools.product(MONTHS, ORDINALS):
        yield f"{month} {ordinal}"
        yield f"the {ordinal} of {month}"
    for ordinal, hour in itertools.product(ORDINALS[:16], HOURS):
        yield f"the {ordinal} at {hour} thirty"
        yield f"the {ordinal} of march at {hour} o'clock"
    for hour, minute in itertools.product(HOURS, MINUTES):
        yield f"at {hour} {minute}"
        yield f"{hour} {minute} in the morning"
        yield f"{hour} {minute} in the afternoon"
    # Digit strings: dates of birth (mm dd yyyy spoken as digits then a year), phone numbers,
    # member ids. Every digit pair and year shape appears so the trigrams are covered.
    years = [f"nineteen {n}" for n in _two_digit_numbers()] + [
        "two thousand", *[f"two thousand {d}" for d in DIGITS[2:]], *[f"twenty {n}" for n in TEENS]]
    for first, second in itertools.product(DIGITS, DIGITS):
        yield f"{first} {second}"
    for index, year in enumerate(years):
        a, b, c, d = (DIGITS[(index + k) % len(DIGITS)] for k in (0, 3, 5, 7))
        yield f"{a} {b} {c} {d} {year}"
        yield f"my date of birth is {a} {b} {c} {d} {year}"
        yield f"born in {year}"
    for start in range(len(DIGITS)):
        run = [DIGITS[(start + k * 3) % len(DIGITS)] for k in range(7)]
        yield " ".join(run)
        yield "my number is " + " ".join(run)


def domain_sentences(extra_phrases: Iterable[str] = ()) -> list[str]:
    """All sentences for the domain model: packaged corpus, base corpus, medicines, red flags,
    generated forms, then the intents' phrases handed in at start-up (deduplicated, order kept so
    the build is reproducible)."""
    seen: dict[str, None] = {}
    for sentence in itertools.chain(packaged_sentences(), base_corpus_sentences(),
                                    medicine_sentences(), red_flag_sentences(),
                                    generated_sentences(), (normalise(p) for p in extra_phrases)):
        if sentence:
            seen.setdefault(sentence, None)
    return list(seen)
