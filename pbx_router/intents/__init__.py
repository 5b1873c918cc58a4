"""Pure domain: caller text (or keypad digits) -> ranked intents with calibrated confidence.

Imports nothing from the adapters; needs no event loop.
"""

from pbx_router.intents.matcher import IntentMatcher, IntentScore, MatchResult
from pbx_router.intents.normalize import fold, normalize
from pbx_router.intents.spec import IntentSpec, Urgency

__all__ = [
    "IntentMatcher",
    "IntentScore",
    "IntentSpec",
    "MatchResult",
    "Urgency",
    "fold",
    "normalize",
]
