"""greet -> listen -> decide -> act, for one call.

Each turn plays a prompt while listening; caller speech stops the prompt (barge-in), a keypad
press answers at any moment, silence after the prompt is "no input". What was heard is matched
to intents and handed to the routing rules with everything else the rules may look at; the
decision (with its trace) is stored on the call record and carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pbx_router.ari import AriError
from pbx_router.ari import events as ev
from pbx_router.calls.call import RESYNCED
from pbx_router.calls.listen import Listener, ListenEvent, MediaSettings
from pbx_router.calls.targets import TargetExecutor
from pbx_router.intents.matcher import MatchResult
from pbx_router.log import get_logger
from pbx_router.media.ports import PortPool
from pbx_router.rules import CallFacts, Decision, QueueFacts, RuleSet, RulesHolder, decide
from pbx_router.speech import EnginePool

if TYPE_CHECKING:
    from pbx_router.calls.booking import BookingService
    from pbx_router.calls.flow import CallFlow
    from pbx_router.calls.queueing import QueueService

log = get_logger("pbx_router.calls")

MAX_TURNS = 4
# Listening that failed to start is tried again this many times, at the start of a later turn.
LISTEN_RETRIES = 1


@dataclass
class Heard:
    text: str = ""
    confidence: float = 0.0
    digits: str = ""
    source: str = "speech"  # speech | keypad | no_input | error
    # The recogniser's other hypotheses and per-word confidences: the emergency screen reads them
    # so that a red flag heard with low confidence still reaches a person.
    alternatives: tuple[str, ...] = ()
    word_confidences: tuple[float, ...] = ()
    # From the end of the utterance (as the endpointer confirmed it) to its transcript: ~0 when
    # recognition started at the pause and kept up, the decode's queueing and cost otherwise.
    recognition_wait_ms: int | None = None


@dataclass
class CallerFacts:
    known_patient: bool | None = None
    recent_calls: Sequence[dt.datetime] = ()


@dataclass
class Brain:
    """The deciding side of a call, built by app.py. Everything but ``rules`` is optional."""

    rules: RulesHolder
    speech: EnginePool | None = None
    ports: PortPool | None = None
    media: MediaSettings = field(default_factory=MediaSettings)
    caller_facts: Callable[[str, dt.datetime], Awaitable[CallerFacts]] | None = None
    queue_facts: Callable[[], Mapping[str, QueueFacts]] = dict
    overrides: Callable[[dt.datetime], Sequence[Any]] = lambda now: ()
    queue_service: QueueService | None = None  # daemon-owned queues; without it, Asterisk Queue()s
    booking: BookingService | None = None  # self-service appointments; without it, schedule -> a person
    dialplan_queue_context: str = "router-queue"
    # The one owner of where callers are sent (built by app.py once the services above exist).
    targets: TargetExecutor | None = None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    no_input_timeout: float = 6.0
    turn_timeout: float = 45.0
    facts_timeout: float = 0.5

    def executor(self) -> TargetExecutor:
        if self.targets is None:  # a Brain assembled without app.py: same executor, no adoption
            self.targets = TargetExecutor(lambda: self.rules.current, queues=self.queue_service, booking=self.booking,
                                          dialplan_queue_context=self.dialplan_queue_context)
        return self.targets


class Conversation:
    def __init__(self, flow: CallFlow, brain: Brain) -> None:
        self.flow = flow
        self.brain = brain
        self.call = flow.call
        self.ari = flow.ari
        self.log = flow.log
        self.listener: Listener | None = None
        self.turns: list[dict[str, Any]] = []
        self.last_heard: Heard | None = None  # what the decision being acted on was based on
        self.ruleset: RuleSet | None = None
        self.listens = 0
        self.listen_failures = 0

    async def run(self) -> None:
        flow, call = self.flow, self.call
        ruleset = self.ruleset = self.brain.rules.current  # a call keeps the rules it started with
        await flow.answer()
        await self.start_listening()
        facts = await self._caller_facts()
        prompt = list(flow.greeting)
        attempt = 1
        decision: Decision | None = None
        try:
            while True:
                if attempt > 1 and self.listener is None and 0 < self.listen_failures <= LISTEN_RETRIES:
                    # Ears that failed to start (Asterisk busy, a leg late into Stasis) get another
                    # chance on the next turn: a whole call on the keypad for one failed request is
                    # what a caller must not get (issue 11, D2).
                    await self.start_listening()
                heard = await self.turn(prompt)
                if heard.source == "error":
                    # The recogniser failed for this utterance: go on with the keypad.
                    attempt = max(attempt, 2)
                match = (
                    ruleset.matcher.match_digits(heard.digits)
                    if heard.digits
                    else ruleset.matcher.match(
                        heard.text, heard.alternatives, heard.word_confidences or None
                    )
                )
                now = self.brain.clock()
                decision = decide(
                    ruleset,
                    CallFacts(
                        transcript=heard.text, match=match, now=now,
                        caller_number=call.summary.caller_number or None,
                        caller_name=call.summary.caller_name or None, dialled=call.dialled,
                        known_patient=facts.known_patient, recent_calls=facts.recent_calls,
                        queues=self.brain.queue_facts(), overrides=self.brain.overrides(now), attempt=attempt,
                    ),
                )
                self.last_heard = heard
                self._record_turn(attempt, heard, decision, match)
                if decision.action in ("reprompt", "keypad") and attempt < MAX_TURNS:
                    prompt = [decision.message] if decision.message else []
                    attempt += 1
                    continue
                break
        finally:
            await self.stop_listening()
        await self.act(decision)

    # --- listening -----------------------------------------------------------------------------

    async def start_listening(self) -> None:
        b = self.brain
        if b.speech is None or b.ports is None:
            return
        self.listens += 1
        listener = Listener(self.call, self.ari, self.flow.registrar, b.speech, b.ports, b.media)
        try:
            await listener.start()
        except Exception as exc:  # noqa: BLE001 - no ears is not a reason to drop the caller
            self.listen_failures += 1
            self.log.warning("listen_start_failed", error=str(exc) or type(exc).__name__,
                             attempt=self.listen_failures)
            await listener.stop()
            return
        self.listener = listener

    async def stop_listening(self) -> None:
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.stop()

    async def _caller_facts(self) -> CallerFacts:
        if self.brain.caller_facts is None or not self.call.summary.caller_number:
            return CallerFacts()
        try:
            async with asyncio.timeout(self.brain.facts_timeout):
                return await self.brain.caller_facts(self.call.summary.caller_number, self.call.summary.started_at)
        except Exception as exc:  # noqa: BLE001 - routing must not wait on a slow database
            self.log.warning("caller_facts_unavailable", error=str(exc) or type(exc).__name__)
            return CallerFacts()

    async def turn(self, prompt: Sequence[str]) -> Heard:
        """Play ``prompt`` while listening; return what the caller said or pressed."""
        call, flow = self.call, self.flow
        loop = asyncio.get_running_loop()
        playback_id = await flow.start_playback(prompt) if prompt else None
        playing = playback_id is not None
        if not playing and self.listener is not None:
            self.listener.new_turn()
        no_input_at = None if playing else loop.time() + self.brain.no_input_timeout
        deadline = loop.time() + self.brain.turn_timeout

        def wanted(e: ev.Event) -> bool:
            if e is RESYNCED or isinstance(e, ListenEvent):
                return True
            if isinstance(e, ev.PlaybackFinished):
                return e.playback is not None and e.playback.id == playback_id
            return isinstance(e, ev.ChannelDtmfReceived) and e.channel is not None and e.channel.id == call.channel_id

        barged_in = False
        try:
            while True:
                until = deadline if no_input_at is None or self.listener is not None else min(deadline, no_input_at)
                try:
                    e = await call.next_event(wanted, timeout=max(0.0, until - loop.time()))
                except TimeoutError:
                    return Heard(source="no_input")
                if isinstance(e, ev.PlaybackFinished) or e is RESYNCED:
                    if e is RESYNCED and playing and playback_id and await flow.playback_alive(playback_id):
                        continue
                    if playing:
                        playing = False
                        if self.listener is not None:
                            self.listener.new_turn()
                        no_input_at = loop.time() + self.brain.no_input_timeout
                elif isinstance(e, ev.ChannelDtmfReceived):
                    return Heard(digits=e.digit, source="keypad")
                elif isinstance(e, ListenEvent):
                    if e.kind == "speech_started":
                        if playing and playback_id and not barged_in:
                            # Barge-in: the caller never has to wait for the prompt to end.
                            await flow.stop_playback(playback_id)
                            barged_in = True
                            self.log.info("barge_in")
                    elif e.kind == "final" and e.transcript is not None:
                        self.log.debug("heard", transcript=e.transcript.text, confidence=e.transcript.confidence)
                        t = e.transcript
                        return Heard(text=t.text, confidence=t.confidence, source="speech",
                                     alternatives=tuple(t.alternatives),
                                     word_confidences=tuple(w.confidence for w in t.words),
                                     recognition_wait_ms=e.wait_ms)
                    elif e.kind == "no_input" and not playing:
                        return Heard(source="no_input")
                    elif e.kind == "error":
                        self.log.warning("recognition_failed", detail=e.detail)
                        return Heard(source="error")
        finally:
            # Stopped once is enough: a second DELETE is a 404 for nothing (issue 11, D5).
            if playing and playback_id and not barged_in:
                await flow.stop_playback(playback_id)

    def _record_turn(self, attempt: int, heard: Heard, decision: Decision, match: MatchResult) -> None:
        summary = self.call.summary
        turn: dict[str, Any] = {
            "attempt": attempt, "source": heard.source, "intent": decision.intent,
            "confidence": round(decision.confidence, 3), "rule": decision.rule, "action": decision.action,
        }
        if heard.recognition_wait_ms is not None:
            turn["recognition_wait_ms"] = heard.recognition_wait_ms
        # Why it was understood so: red flags with their words, denied ones, every candidate's
        # evidence. Words are transcript: stored with the call record, never logged above DEBUG.
        if match.red_flags:
            turn["red_flags"] = [dict(f) for f in match.red_flags]
        if match.denied:
            turn["denied"] = list(match.denied)
        if len(match.requests) > 1:
            turn["requests"] = list(match.requests)
        turn["intents"] = [s.to_dict() for s in match.intents[:3]]
        self.turns.append(turn)
        summary.extra["turns"] = self.turns
        if heard.text:
            summary.transcript = heard.text if not summary.transcript else f"{summary.transcript} | {heard.text}"
        summary.intent = decision.intent
        summary.route = decision.to_dict()
        self.log.info("call_decided", attempt=attempt, source=heard.source, intent=decision.intent,
                      confidence=round(decision.confidence, 3), rule=decision.rule, action=decision.action,
                      target=decision.target.name if decision.target else None,
                      red_flags=[f["flag"] for f in match.red_flags],
                      recognition_wait_ms=heard.recognition_wait_ms)

    # --- acting ------------------------------------------------------------------------------------

    async def act(self, decision: Decision | None) -> None:
        flow = self.flow
        if decision is None:  # pragma: no cover - the loop always decides
            await flow.to_fallback(f"fallback:dialplan:{flow.fallback.context}")
            return
        if decision.message:
            await flow.play([decision.message], timeout=120)
        # Where the caller goes, and on from there, is the target executor's (calls/targets.py):
        # it keeps emergency and crisis callers with a person whatever happens next.
        await self.brain.executor().decided(flow, decision, rules=self.ruleset)


async def _quiet(aw: Awaitable[Any]) -> None:
    with contextlib.suppress(AriError):
        await aw
