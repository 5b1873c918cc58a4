"""Which few slots to offer a caller (pure).

Reading out the three earliest slots usually means three half-hours of one morning: the caller
hears one choice three times, and "Tuesday" cannot pick between them. So offers are spread: the
earliest slot of each of the first days, and only when there are fewer days than offers, further
times on those days (at least ``min_gap`` apart, so "nine" and "nine thirty" are not both read).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from zoneinfo import ZoneInfo

from pbx_router.scheduling.model import Slot


def spread_offers(
    slots: Sequence[Slot],
    tz: ZoneInfo,
    *,
    max_offers: int = 3,
    min_gap: dt.timedelta = dt.timedelta(hours=1),
    exclude: Collection[dt.datetime] = (),
) -> list[Slot]:
    """Up to ``max_offers`` of ``slots`` (earliest first), one per local day first, then more
    times on the same days. ``exclude``: starts the caller already declined. Result is in time
    order, so "the first one" is the earliest."""
    candidates = [s for s in sorted(slots, key=lambda s: (s.start, s.provider_id)) if s.start not in exclude]
    chosen: list[Slot] = []
    seen_days: set[dt.date] = set()
    for slot in candidates:
        day = slot.start.astimezone(tz).date()
        if day not in seen_days:
            seen_days.add(day)
            chosen.append(slot)
            if len(chosen) == max_offers:
                return sorted(chosen, key=lambda s: s.start)
    for slot in candidates:
        if len(chosen) == max_offers:
            break
        if slot in chosen:
            continue
        if all(abs(slot.start - other.start) >= min_gap for other in chosen):
            chosen.append(slot)
    return sorted(chosen, key=lambda s: s.start)
