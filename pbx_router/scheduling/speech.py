"""What the booking voice flow needs from words, pure: requests -> preferences, slots -> Asterisk
media, replies -> choices / yes-no / dates of birth. Transcripts come from a recogniser, so
everything here accepts lower-case words without punctuation as well as typed text.

Media follow Asterisk's own English ``SayUnixTime`` default (``ABdY 'digits/at' IMp``, minus the
year): ``digits/day-N`` (0 = Sunday), ``digits/mon-N`` (0 = January), ``digits/h-N`` ordinals
(21-29 as ``digits/20`` + ``digits/h-N``), ``digits/at``, the 12-hour clock from ``digits/N``,
``digits/oclock`` / ``digits/oh``, and ``digits/a-m`` / ``digits/p-m``. All ship in core-sounds-en.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pbx_router.scheduling.model import (
    AppointmentType,
    PartOfDay,
    Provider,
    Slot,
    SlotQuery,
)

# -- words ------------------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_WEEKDAYS = {
    "monday": 0, "mondays": 0, "tuesday": 1, "tuesdays": 1, "wednesday": 2, "wednesdays": 2,
    "thursday": 3, "thursdays": 3, "friday": 4, "fridays": 4, "saturday": 5, "saturdays": 5,
    "sunday": 6, "sundays": 6,
}
_ORDINAL_DIGITS = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")
_TOKEN = re.compile(r"[a-z]+|\d+(?:st|nd|rd|th)?")


def tokens(text: str) -> list[str]:
    """Lower-case words and digit runs; "o'clock" -> "oclock", "9:30" -> "9", "30"."""
    lowered = text.lower().replace("o'clock", "oclock").replace("o clock", "oclock")
    lowered = lowered.replace("a.m.", "am").replace("p.m.", "pm").replace("a m", "am").replace("p m", "pm")
    return _TOKEN.findall(lowered)


def _small_number(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """A cardinal 0-99 starting at ``words[i]``: (value, index after it)."""
    if i >= len(words):
        return None
    word = words[i]
    if word.isdigit() and len(word) <= 2:
        return int(word), i + 1
    if word in _UNITS and word not in ("o",):
        return _UNITS[word], i + 1
    if word in _TEENS:
        return _TEENS[word], i + 1
    if word in _TENS:
        if i + 1 < len(words) and words[i + 1] in _UNITS and _UNITS[words[i + 1]] > 0:
            return _TENS[word] + _UNITS[words[i + 1]], i + 2
        return _TENS[word], i + 1
    return None


def _ordinal_or_number(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """A day of month (1-31) said as "fourteenth", "twenty first", "14th", "14", "fourteen"."""
    if i >= len(words):
        return None
    word = words[i]
    match = _ORDINAL_DIGITS.match(word)
    if match:
        return int(match[1]), i + 1
    if word in _ORDINALS:
        return _ORDINALS[word], i + 1
    if word in _TENS and i + 1 < len(words) and words[i + 1] in _ORDINALS and _ORDINALS[words[i + 1]] < 10:
        return _TENS[word] + _ORDINALS[words[i + 1]], i + 2
    return _small_number(words, i)


def _year(words: Sequence[str]) -> int | None:
    """"nineteen eighty", "nineteen oh five", "two thousand three", "twenty twenty one", "1980"."""
    words = [w for w in words if w not in ("and", "in")]
    if not words:
        return None
    if len(words) == 1 and words[0].isdigit() and len(words[0]) == 4:
        return int(words[0])
    if len(words) == 2 and all(w.isdigit() and len(w) == 2 for w in words):
        return int(words[0] + words[1])
    if words[:2] == ["two", "thousand"]:
        rest = words[2:]
        if not rest:
            return 2000
        small = _small_number(rest, 0)
        return 2000 + small[0] if small and small[1] == len(rest) else None
    head = _small_number(words, 0)
    if head is None or head[0] not in (18, 19, 20):
        return None
    rest = words[head[1]:]
    if rest in (["hundred"],):
        return head[0] * 100
    if len(rest) == 2 and rest[0] in ("oh", "o", "zero") and rest[1] in _UNITS:
        return head[0] * 100 + _UNITS[rest[1]]
    tail = _small_number(rest, 0)
    if tail is None or tail[1] != len(rest) or tail[0] < 10:
        return None
    return head[0] * 100 + tail[0]


def _digit_string(words: Sequence[str]) -> str | None:
    """Words that are all digits or digit names ("zero three one four ...") as one digit string."""
    out: list[str] = []
    for word in words:
        if word.isdigit():
            out.append(word)
        elif word in _UNITS:
            out.append(str(_UNITS[word]))
        else:
            return None
    return "".join(out) or None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


# -- date of birth ----------------------------------------------------------------------------

_DOB_FILLER = {
    "the", "of", "my", "is", "its", "it", "s", "born", "on", "date", "birth", "birthday", "i", "was", "um", "uh",
    "and",
}


def parse_dob_keypad(digits: str, today: dt.date | None = None) -> dt.date | None:
    """MMDDYYYY typed on the keypad (``#`` / ``*`` ignored). None unless a real, past date."""
    clean = digits.replace("#", "").replace("*", "").strip()
    if len(clean) != 8 or not clean.isdigit():
        return None
    date = _safe_date(int(clean[4:]), int(clean[:2]), int(clean[2:4]))
    return date if date is not None and _plausible_dob(date, today) else None


def _plausible_dob(date: dt.date, today: dt.date | None) -> bool:
    today = today or dt.date.today()
    return dt.date(today.year - 125, 1, 1) <= date <= today


def parse_dob_speech(text: str, today: dt.date | None = None) -> dt.date | None:
    """A spoken date of birth: "march fourteenth nineteen eighty", "the 14th of march 1980",
    "three fourteen nineteen eighty", "oh three one four one nine eight zero" (MMDDYYYY)."""
    words = [w for w in tokens(text) if w not in _DOB_FILLER]
    if not words:
        return None
    month_at = next((i for i, w in enumerate(words) if w in _MONTHS), None)
    date: dt.date | None = None
    if month_at is not None:
        month = _MONTHS[words[month_at]]
        before, after = words[:month_at], words[month_at + 1:]
        if before:  # "fourteenth of march 1980"
            day = _ordinal_or_number(before, 0)
            if day is None or day[1] != len(before):
                return None
            year = _year(after)
            day_value = day[0]
        else:  # "march fourteenth 1980": the day is the first phrase, the year the rest
            day = _ordinal_or_number(after, 0)
            if day is None:
                return None
            year = _year(after[day[1]:])
            day_value = day[0]
            if year is None and after[0] in _TENS and day[1] == 2:
                # "march twenty nineteen eighty": the greedy day swallowed nothing of the year,
                # but "twenty one nineteen eighty" might be day 21; try the shorter day too.
                year = _year(after[1:])
                day_value = _TENS[after[0]]
        if year is None:
            return None
        date = _safe_date(year, month, day_value)
    else:
        digits = _digit_string(words)
        if digits is not None and len(digits) == 8:
            return parse_dob_keypad(digits, today)
        date = _numeric_dob(words)
    return date if date is not None and _plausible_dob(date, today) else None


def _numeric_dob(words: Sequence[str]) -> dt.date | None:
    """"three fourteen nineteen eighty" / "3 14 1980": month, day, year as numbers."""
    month = _small_number(words, 0)
    if month is None or not 1 <= month[0] <= 12:
        return None
    day = _ordinal_or_number(words, month[1])
    if day is None:
        return None
    year = _year(words[day[1]:])
    if year is None:
        return None
    return _safe_date(year, month[0], day[0])


# -- yes / no / operator ----------------------------------------------------------------------

_YES = {
    "yes", "yeah", "yep", "yup", "correct", "right", "sure", "ok", "okay", "perfect", "great", "fine", "confirm",
    "book", "absolutely", "definitely", "please",
}
_NO = {
    "no", "nope", "nah", "wrong", "incorrect", "not", "dont", "don", "cancel", "different", "another", "other",
    "neither", "none",
}
_HUMAN = {"operator", "representative", "human", "person", "agent", "receptionist", "someone", "somebody", "staff"}
_HUMAN_PHRASES = ("front desk", "real person", "talk to a", "speak to a", "speak with", "talk with")


def wants_human(text: str = "", digits: str = "") -> bool:
    """The caller asked for a person (or pressed 0)."""
    if digits.strip().startswith("0"):
        return True
    lowered = text.lower()
    return bool(_HUMAN.intersection(tokens(lowered))) or any(p in lowered for p in _HUMAN_PHRASES)


def interpret_yes_no(text: str = "", digits: str = "") -> bool | None:
    """True / False / None (unclear). Keypad: 1 = yes, 2 = no. Any negation wins ("not right")."""
    key = digits.strip()[:1]
    if key == "1":
        return True
    if key == "2":
        return False
    words = set(tokens(text.replace("n't", " not")))
    if words & _NO:
        return False
    if words & _YES or "sounds good" in text.lower():
        return True
    return None


# -- booking request --------------------------------------------------------------------------

_MONTH_NAMES = frozenset(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december")
)
# "the first one", "the first available": an ordinal that is not a day of the month.
_NOT_A_DATE_AFTER = frozenset(("one", "available", "appointment", "slot", "opening", "time", "thing", "option"))
_USUAL = ("usual", "regular", "normal", "own", "primary", "same")
_PART_WORDS = {
    "morning": PartOfDay.MORNING, "mornings": PartOfDay.MORNING, "early": PartOfDay.MORNING,
    "am": PartOfDay.MORNING, "afternoon": PartOfDay.AFTERNOON, "afternoons": PartOfDay.AFTERNOON,
    "lunch": PartOfDay.AFTERNOON, "evening": PartOfDay.EVENING, "evenings": PartOfDay.EVENING,
    "night": PartOfDay.EVENING, "pm": PartOfDay.AFTERNOON,
}


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """Preferences heard in a request. Empty fields mean "no preference"."""

    type_id: str | None = None
    provider_id: str | None = None
    usual_provider: bool = False  # "my usual doctor" (resolved when the patient is known)
    days: frozenset[dt.date] = frozenset()
    weekdays: frozenset[int] = frozenset()
    part_of_day: PartOfDay | None = None
    earliest: dt.date | None = None

    def to_query(self, tz: ZoneInfo, *, default_type_id: str, usual_provider_id: str | None = None) -> SlotQuery:
        provider = self.provider_id or (usual_provider_id if self.usual_provider else None)
        earliest = (
            None if self.earliest is None else dt.datetime.combine(self.earliest, dt.time(0), tzinfo=tz)
        )
        return SlotQuery(
            type_id=self.type_id or default_type_id,
            provider_id=provider,
            days=self.days,
            weekdays=self.weekdays,
            part_of_day=self.part_of_day,
            earliest=earliest,
        )


def _week_of(day: dt.date) -> frozenset[dt.date]:
    monday = day - dt.timedelta(days=day.weekday())
    return frozenset(monday + dt.timedelta(days=n) for n in range(7))


def parse_request(
    text: str,
    today: dt.date,
    types: Sequence[AppointmentType] = (),
    providers: Sequence[Provider] = (),
) -> BookingRequest:
    """"with my usual doctor next Tuesday morning" -> usual provider, that Tuesday, morning.

    Day words: "today", "tomorrow", "day after tomorrow", "<weekday>" / "this <weekday>" (the
    next one after today), "next <weekday>" (that weekday in next calendar week, Monday-based),
    "this week", "next week", "<month> <day>", "the <day>th" (this month, or next if past).
    """
    words = tokens(text)
    lowered = " ".join(words)
    type_id = _match_type(lowered, types)
    provider_id = _match_provider(words, providers)
    usual = provider_id is None and (
        "my doctor" in lowered
        or any(f"{u} doctor" in lowered or f"{u} provider" in lowered for u in _USUAL)
    )
    part = next((_PART_WORDS[w] for w in words if w in _PART_WORDS), None)
    days: set[dt.date] = set()
    weekdays: set[int] = set()
    earliest: dt.date | None = None
    i = 0
    while i < len(words):
        word = words[i]
        prev = words[i - 1] if i else ""
        if word == "today":
            days.add(today)
        elif word == "tomorrow":
            days.add(today + dt.timedelta(days=2 if prev == "after" else 1))
        elif word in _WEEKDAYS:
            target = _WEEKDAYS[word]
            if prev == "next":
                next_monday = today + dt.timedelta(days=7 - today.weekday())
                days.add(next_monday + dt.timedelta(days=target))
            elif word.endswith("s"):  # "tuesdays": any Tuesday
                weekdays.add(target)
            else:
                ahead = (target - today.weekday()) % 7 or 7
                days.add(today + dt.timedelta(days=ahead))
        elif word == "week" and prev in ("next", "this"):
            week = _week_of(today + dt.timedelta(days=7 if prev == "next" else 0))
            days.update(d for d in week if d >= today)
        elif word in _MONTH_NAMES and (word != "may" or _ordinal_or_number(words, i + 1) is not None):
            # Full names only ("mar", "jan" are not how callers say months); "may" only with a day.
            day = _ordinal_or_number(words, i + 1)
            if day is not None:
                date = _next_date(today, _MONTHS[word], day[0])
                if date is not None:
                    days.add(date)
                i = day[1]
                continue
        elif prev == "the" and (_ORDINAL_DIGITS.match(word) or word in _ORDINALS):
            day = _ordinal_or_number(words, i)
            if (
                day is not None
                and 1 <= day[0] <= 31
                and not _followed_by_month(words, day[1])
                and (day[1] >= len(words) or words[day[1]] not in _NOT_A_DATE_AFTER)
            ):
                date = _next_date_in_month(today, day[0])
                if date is not None:
                    days.add(date)
        elif (
            word in ("after", "from") and i + 1 < len(words) and words[i + 1] == "next" and "week" in words[i + 2:i + 3]
        ):
            earliest = today + dt.timedelta(days=7 - today.weekday())
        i += 1
    return BookingRequest(
        type_id=type_id,
        provider_id=provider_id,
        usual_provider=usual,
        days=frozenset(days),
        weekdays=frozenset(weekdays),
        part_of_day=part,
        earliest=earliest,
    )


def _followed_by_month(words: Sequence[str], i: int) -> bool:
    return i + 1 < len(words) and words[i] == "of" and words[i + 1] in _MONTHS


def _next_date(today: dt.date, month: int, day: int) -> dt.date | None:
    for year in (today.year, today.year + 1):
        date = _safe_date(year, month, day)
        if date is not None and date >= today:
            return date
    return None


def _next_date_in_month(today: dt.date, day: int) -> dt.date | None:
    date = _safe_date(today.year, today.month, day)
    if date is not None and date >= today:
        return date
    month = today.month % 12 + 1
    return _safe_date(today.year + (today.month == 12), month, day)


def _match_type(lowered: str, types: Sequence[AppointmentType]) -> str | None:
    best: tuple[int, str] | None = None
    for appointment_type in types:
        if not appointment_type.phone_bookable:
            continue
        for phrase in (*appointment_type.keywords, appointment_type.name):
            needle = " ".join(tokens(phrase))
            if needle and re.search(rf"\b{re.escape(needle)}\b", lowered):
                if best is None or len(needle) > best[0]:
                    best = (len(needle), appointment_type.id)
    return None if best is None else best[1]


def _match_provider(words: Sequence[str], providers: Sequence[Provider]) -> str | None:
    lowered = " ".join(words)
    for provider in providers:
        names = [*provider.aliases, provider.name, provider.name.split()[-1]]
        for name in names:
            needle = " ".join(w for w in tokens(name) if w not in ("dr", "doctor"))
            if needle and re.search(rf"\b{re.escape(needle)}\b", lowered):
                return provider.id
    return None


# -- slot choice ------------------------------------------------------------------------------

_CHOICE_WORDS = {
    "first": 0, "one": 0, "1": 0, "1st": 0, "earliest": 0, "earlier": 0,
    "second": 1, "two": 1, "2": 1, "2nd": 1, "middle": 1,
    "third": 2, "three": 2, "3": 2, "3rd": 2,
}


def interpret_choice(slots: Sequence[Slot], tz: ZoneInfo, text: str = "", digits: str = "") -> int | None:
    """Which offered slot (index) the caller picked, or None when unclear.

    Keypad 1-3; "the first one" / "number two" / "the last one"; "yes" when only one slot was
    offered; a weekday ("Tuesday") or a time ("nine thirty", "2 pm") that matches exactly one
    offered slot. A time or weekday is tried before bare numbers: "two pm" is a time."""
    if not slots:
        return None
    key = digits.strip()[:1]
    if key:
        return int(key) - 1 if key.isdigit() and 1 <= int(key) <= len(slots) else None
    words = tokens(text)
    if not words or interpret_yes_no(text) is False:
        return None
    local = [s.start.astimezone(tz) for s in slots]

    by_time = _match_time(words, local)
    named_days = {_WEEKDAYS[w] for w in words if w in _WEEKDAYS}
    candidates = [i for i, t in enumerate(local) if not named_days or t.weekday() in named_days]
    if by_time is not None:
        candidates = [i for i in candidates if i in by_time]
    if named_days or by_time is not None:
        return candidates[0] if len(candidates) == 1 else None

    if "last" in words or "latest" in words or "later" in words:
        return len(slots) - 1
    picks = {_CHOICE_WORDS[w] for w in words if w in _CHOICE_WORDS}
    if len(picks) == 1:
        pick = picks.pop()
        return pick if pick < len(slots) else None
    if not picks and len(slots) == 1 and interpret_yes_no(text) is True:
        return 0
    return None


def _match_time(words: Sequence[str], local: Sequence[dt.datetime]) -> set[int] | None:
    """Indexes of slots whose time was said; None when no time was said."""
    said: list[tuple[int, int | None, str | None]] = []  # hour (1-12 or 0-23), minute, am/pm
    i = 0
    while i < len(words):
        hour = _small_number(words, i)
        if hour is not None and 1 <= hour[0] <= 23:
            j = hour[1]
            minute: int | None = None
            if j < len(words) and words[j] == "oclock":
                minute, j = 0, j + 1
            elif j + 1 < len(words) and words[j] in ("oh", "o") and words[j + 1] in _UNITS:
                minute, j = _UNITS[words[j + 1]], j + 2
            else:
                tail = _small_number(words, j)
                if tail is not None and 10 <= tail[0] <= 59:
                    minute, j = tail
            meridiem = words[j] if j < len(words) and words[j] in ("am", "pm") else None
            if meridiem is not None:
                j += 1
                minute = 0 if minute is None else minute  # "9 am" is 9:00, not 9:30
            if minute is not None or meridiem is not None or "at" == (words[i - 1] if i else ""):
                said.append((hour[0], minute, meridiem))
                i = j
                continue
        i += 1
    if not said:
        return None
    matched: set[int] = set()
    for index, moment in enumerate(local):
        for said_hour, said_minute, meridiem in said:
            hour12 = moment.hour % 12 or 12
            hour_ok = said_hour == moment.hour or (said_hour <= 12 and said_hour == hour12)
            if meridiem == "am" and moment.hour >= 12 or meridiem == "pm" and moment.hour < 12:
                hour_ok = False
            if hour_ok and (said_minute is None or said_minute == moment.minute):
                matched.add(index)
    return matched


# -- speaking a slot --------------------------------------------------------------------------


def day_of_month_sounds(day: int) -> list[str]:
    """Ordinal day as core sounds, the way Asterisk's English ``say_date_with_format`` does."""
    if day < 21 or day == 30:
        return [f"digits/h-{day}"]
    if day == 31:
        return ["digits/30", "digits/h-1"]
    return ["digits/20", f"digits/h-{day - 20}"]


def time_sounds(moment: dt.time) -> list[str]:
    """12-hour clock: "nine", "thirty" / "oh five" / "o'clock", "a.m." (``IMp``)."""
    hour = moment.hour % 12 or 12
    sounds = [f"digits/{hour}"]
    minute = moment.minute
    if minute == 0:
        sounds.append("digits/oclock")
    elif minute < 10:
        sounds += ["digits/oh", f"digits/{minute}"]
    elif minute < 21 or minute % 10 == 0:
        sounds.append(f"digits/{minute}")
    else:
        sounds += [f"digits/{minute // 10 * 10}", f"digits/{minute % 10}"]
    sounds.append("digits/p-m" if moment.hour >= 12 else "digits/a-m")
    return sounds


def slot_sounds(slot: Slot, tz: ZoneInfo) -> list[str]:
    """Sound names for "Tuesday, November fourteenth, at nine thirty a.m." in the clinic's zone."""
    local = slot.start.astimezone(tz)
    weekday_sunday_zero = (local.weekday() + 1) % 7
    return [
        f"digits/day-{weekday_sunday_zero}",
        f"digits/mon-{local.month - 1}",
        *day_of_month_sounds(local.day),
        "digits/at",
        *time_sounds(local.time()),
    ]


def slot_media(slot: Slot, tz: ZoneInfo) -> list[str]:
    """``slot_sounds`` as ARI media URIs for ``POST /channels/{id}/play`` (``media`` list)."""
    return [f"sound:{name}" for name in slot_sounds(slot, tz)]


def offer_media(slots: Sequence[Slot], tz: ZoneInfo, *, max_offers: int = 3) -> list[str]:
    """ "For <slot 1>, press 1. ..." as media: ``digits/N`` before each slot's read-out
    (the flow plays its own "press" prompt around these)."""
    media: list[str] = []
    for number, slot in enumerate(slots[:max_offers], start=1):
        media.append(f"sound:digits/{number}")
        media.extend(slot_media(slot, tz))
    return media
