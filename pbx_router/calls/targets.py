"""Where a caller is sent next: the one owner of every hand-off.

The conversation (a rules decision), a daemon-owned queue that lets its caller go (overflow on
time or length, closed by staff, nobody logged in), the booking dialog handing over to staff, a
restarted daemon's adopted queue caller and the dialplan fallback all go through
:meth:`TargetExecutor.send`; none of them dispatches a target itself. The executor owns:

* **an emergency or crisis caller** (``Call.urgency == "emergency"``, set from the decision and
  never lowered) is never sent to a non-human target (callback, message, voicemail, schedule,
  hangup), wherever they are in the flow;
* when the person they were sent to cannot take them (a queue closed, closed by staff, with
  nobody staffing it, past its maximum wait or full; an endpoint that does not answer), they go to
  the next human target of ``settings.emergency.chain`` (default: ``settings.emergency.target``),
  each tried once, and after the last to the dialplan fallback that rings a person;
* the fallback is retried with backoff and, if it cannot be reached at all, the caller is hung up
  and counted rather than left in Stasis in silence (:meth:`CallFlow.to_fallback`).

Routine and urgent callers go where the rules and the queue's own overflow say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from pbx_router.calls.call import Route
from pbx_router.calls.queueing import Member, Overflowed
from pbx_router.log import get_logger
from pbx_router.queues import DEFAULT_PRIORITY, OverflowSpec
from pbx_router.rules.decision import Decision, Target
from pbx_router.rules.engine import HUMAN_KINDS

if TYPE_CHECKING:
    from pbx_router.calls.call import Call
    from pbx_router.calls.flow import CallFlow
    from pbx_router.rules.loader import RuleSet

log = get_logger("pbx_router.calls.targets")

#: The daemon's dialplan fallback (``calls.fallback``): a person, the end of every road.
FALLBACK = Target("fallback", "fallback", {}, "the dialplan fallback (calls.fallback)")
HANGUP = Target("hangup", "hangup", {}, "hang up")
#: A chain of queue overflows longer than this is a loop in the configuration: a person takes it.
MAX_HOPS = 16


class Queues(Protocol):
    """The daemon-owned queues, as the executor uses them (``calls/queueing.QueueService``)."""

    def has_queue(self, name: str) -> bool: ...

    async def serve(self, flow: CallFlow, queue: str, *, priority: int | None = None, intent: str | None = None,
                    joined_at: float | None = None) -> Overflowed | None: ...

    async def adopted_member(self, call: Call) -> Member | None: ...

    async def resume(self, flow: CallFlow, member: Member) -> Overflowed | None: ...


class SelfService(Protocol):
    """Self-service booking (``calls/booking.BookingService``)."""

    async def run(self, conversation: Any, flow_name: str = "book", decision: Decision | None = None) -> None: ...


class Supervisor(Protocol):
    adoption_handlers: list[Any]


@dataclass(frozen=True, slots=True)
class Handoff:
    """What travels with the caller from one target to the next."""

    priority: int = DEFAULT_PRIORITY
    intent: str | None = None
    reason: str = ""
    # What the call record says if this hop ends the routing (e.g. queue:nurse:overflow:max_wait).
    outcome: str | None = None
    left_queue: str | None = None  # the daemon-owned queue the caller just left
    joined_at: float | None = None  # arrival in the first queue: a queue move keeps the place
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class _Onward:
    """The target could not keep the caller: where its own configuration sends them (None: the
    fallback), and what they carry. An emergency caller takes the chain instead."""

    target: Target | None
    handoff: Handoff


def _key(target: Target) -> str:
    """What "the same person" means when walking the chain (two targets may name one queue)."""
    p = target.params
    if target.kind == "queue":
        return f"queue:{p.get('queue')}"
    if target.kind == "endpoint":
        return f"endpoint:{p.get('endpoint')}"
    if target.kind == "dialplan":
        return f"dialplan:{p.get('context')},{p.get('extension', 's')},{p.get('priority', 1)}"
    return f"{target.kind}:{target.name}"


class _Escalation:
    """One call's walk along the emergency chain: who was tried, who is next."""

    def __init__(self, rules: RuleSet | None) -> None:
        self.rules = rules
        self.chain: list[Target] = []
        if rules is not None:
            self.chain = [rules.targets[n] for n in rules.settings.emergency.escalation if n in rules.targets]
        self.tried: set[str] = set()

    def next_after(self, current: Target | None) -> Target:
        """The next untried human of the chain after ``current`` (from the start when it is not
        in the chain, wrapping round once), else the fallback."""
        order = self.chain
        names = [t.name for t in order]
        if current is not None and current.name in names:
            i = names.index(current.name)
            order = order[i + 1:] + order[:i]
        for target in order:
            if target.kind in HUMAN_KINDS and _key(target) not in self.tried:
                return target
        return FALLBACK


class TargetExecutor:
    """Sends callers to targets (see the module docstring). One per daemon, built by ``app.py``."""

    def __init__(
        self,
        rules: Callable[[], RuleSet | None],
        *,
        queues: Queues | None = None,
        booking: SelfService | None = None,
        dialplan_queue_context: str = "router-queue",
    ) -> None:
        self._rules = rules
        self.queues = queues
        self.booking = booking
        self.dialplan_queue_context = dialplan_queue_context

    def attach(self, supervisor: Supervisor) -> None:
        """Adopted callers who were waiting in a daemon-owned queue take their place again, and
        are sent on from here if the queue lets them go."""
        if self.queues is not None:
            supervisor.adoption_handlers.append(self.adopt_queued)

    # --- entry points ---------------------------------------------------------------------------

    async def decided(self, flow: CallFlow, decision: Decision, *, rules: RuleSet | None = None) -> None:
        """Carry out a rules decision (its message has been played)."""
        flow.call.raise_urgency(decision.urgency)
        handoff = Handoff(priority=decision.priority, intent=decision.intent, reason=decision.reason,
                          decision=decision)
        target = decision.target
        if decision.action == "hangup":
            target = HANGUP
        elif target is None:
            handoff = replace(handoff, outcome=f"no_target:{decision.action}")
            target = FALLBACK
        await self.send(flow, target, handoff, rules=rules)

    async def send(self, flow: CallFlow, target: Target | None, handoff: Handoff, *,
                   rules: RuleSet | None = None) -> None:
        """Send the caller to ``target`` (None: the fallback) and on, until someone has them."""
        escalation = _Escalation(rules if rules is not None else self._rules())
        await self._run(flow, target, handoff, escalation)

    async def adopt_queued(self, flow: CallFlow) -> bool:
        """Supervisor adoption handler: True when the caller was waiting in one of our queues."""
        if self.queues is None:
            return False
        member = await self.queues.adopted_member(flow.call)
        if member is None:
            return False
        left = await self.queues.resume(flow, member)
        if left is not None:
            escalation = _Escalation(self._rules())
            queue = Target(left.queue, "queue", {"queue": left.queue})
            escalation.tried.add(_key(queue))
            onward = self._after_queue(escalation, left, Handoff(priority=left.priority))
            await self._run(flow, onward.target, onward.handoff, escalation, left=queue)
        return True

    # --- the walk -------------------------------------------------------------------------------

    async def _run(self, flow: CallFlow, target: Target | None, handoff: Handoff, escalation: _Escalation,
                   left: Target | None = None) -> None:
        call = flow.call
        current = target if target is not None else FALLBACK
        if left is not None and call.emergency:
            current = self._escalate(flow, escalation, left, handoff)
        for _ in range(MAX_HOPS):
            if call.emergency and current.kind not in HUMAN_KINDS and current is not FALLBACK:
                safe = escalation.next_after(None)
                flow.log.warning("emergency_kept_with_a_person", instead_of=current.name, kind=current.kind,
                                 to=safe.name)
                self._note(flow, current, safe, f"{current.kind} is not a person")
                current = safe
            escalation.tried.add(_key(current))
            onward = await self._perform(flow, current, handoff, escalation)
            if onward is None:
                return
            handoff = onward.handoff
            if call.emergency:
                current = self._escalate(flow, escalation, current, handoff)
            else:
                current = onward.target if onward.target is not None else FALLBACK
        flow.log.error("routing_hop_limit", hops=MAX_HOPS, last=current.name)
        await flow.to_fallback(f"hop_limit:dialplan:{flow.fallback.context}")

    def _escalate(self, flow: CallFlow, escalation: _Escalation, current: Target, handoff: Handoff) -> Target:
        nxt = escalation.next_after(current)
        why = handoff.outcome or "not answered"
        flow.log.warning("emergency_escalated", left=current.name, why=why, to=nxt.name)
        self._note(flow, current, nxt, why)
        return nxt

    @staticmethod
    def _note(flow: CallFlow, left: Target, to: Target, why: str) -> None:
        """The call record shows every step an emergency caller was moved along, and why."""
        steps = flow.call.summary.extra.setdefault("emergency_chain", [])
        steps.append({"from": left.name, "why": why, "to": to.name})

    async def _perform(self, flow: CallFlow, target: Target, handoff: Handoff,
                       escalation: _Escalation) -> _Onward | None:
        """Act on one target. None: the caller is settled (talking, in the dialplan, hung up);
        else they are still ours and need somewhere else."""
        call = flow.call
        kind, params = target.kind, dict(target.params)
        if kind == "queue":
            name = str(params["queue"])
            if self.queues is not None and self.queues.has_queue(name) and name != handoff.left_queue:
                left = await self.queues.serve(flow, name, priority=handoff.priority, intent=handoff.intent,
                                               joined_at=handoff.joined_at)
                return None if left is None else self._after_queue(escalation, left, handoff)
            await flow.continue_to(Route("dialplan", context=self.dialplan_queue_context, extension=name),
                                   outcome=handoff.outcome or f"queue:{name}")
        elif kind == "endpoint":
            failed = await flow.dial(Route("endpoint", endpoint=str(params["endpoint"]),
                                           timeout=float(params.get("timeout", 30))))
            if failed is not None:
                return _Onward(None, replace(handoff, outcome=failed))
        elif kind == "dialplan":
            await flow.continue_to(Route("dialplan", context=str(params["context"]),
                                         extension=str(params.get("extension", "s")),
                                         priority=int(params.get("priority", 1))),
                                   outcome=handoff.outcome or "routed")
        elif kind == "voicemail":
            await flow.continue_to(Route("dialplan", context=str(params["context"]),
                                         extension=str(params["extension"])),
                                   outcome=handoff.outcome or "voicemail")
        elif kind == "message":
            await flow.play([str(params["message"])], timeout=120)
            call.summary.outcome = f"{handoff.outcome}:message" if handoff.outcome else f"message:{target.name}"
            await flow.hangup_caller()
        elif kind == "callback":
            queue = params.get("queue") or handoff.left_queue
            call.summary.extra["callback_request"] = {
                "queue": queue, "intent": handoff.intent, "reason": handoff.reason,
                "number": call.summary.caller_number,
            }
            call.summary.outcome = f"callback:{queue or target.name}"
            await flow.play(["sound:vm-goodbye"], timeout=30)
            await flow.hangup_caller()
        elif kind == "schedule":
            if handoff.left_queue is not None:
                # A queue overflowing into self-service: a person takes it instead.
                return _Onward(None, replace(handoff, outcome=f"{handoff.outcome}:schedule"))
            conversation = flow.conversation
            if self.booking is not None and conversation is not None:
                # Self-service: the booking flow listens again through this conversation.
                await self.booking.run(conversation, str(params.get("flow", "book")), handoff.decision)
            else:
                await flow.continue_to(Route("dialplan", context=self.dialplan_queue_context, extension="scheduling"),
                                       outcome="queue:scheduling")
        elif kind == "hangup":
            call.summary.outcome = "hung_up_by_rules"
            await flow.hangup_caller()
        elif kind == "fallback":
            await flow.to_fallback(f"{handoff.outcome or 'fallback'}:dialplan:{flow.fallback.context}")
        else:  # a kind newer than this executor: a person takes it
            return _Onward(None, replace(handoff, outcome=f"fallback:unknown_target:{kind}"))
        return None

    def _after_queue(self, escalation: _Escalation, left: Overflowed, handoff: Handoff) -> _Onward:
        """The queue let the caller go: its own overflow, as a target."""
        outcome = f"queue:{left.queue}:overflow:{left.reason}"
        moved = replace(handoff, priority=left.priority, joined_at=left.joined_at, outcome=outcome,
                        left_queue=left.queue, reason=f"queue {left.queue}: {left.reason}")
        spec = left.spec
        if spec is None:
            return _Onward(None, moved)
        target = self._overflow_target(escalation, spec, left.queue)
        if target is None:
            log.warning("queue_overflow_target_unknown", target=spec.target)
            return _Onward(None, replace(moved, outcome=f"{outcome}:unknown_target"))
        return _Onward(target, moved)

    @staticmethod
    def _overflow_target(escalation: _Escalation, spec: OverflowSpec, queue: str) -> Target | None:
        if spec.queue is not None:
            return Target(f"queue:{spec.queue}", "queue", {"queue": spec.queue})
        if spec.voicemail is not None:
            return Target("voicemail", "voicemail",
                          {"context": spec.voicemail.context, "extension": spec.voicemail.extension})
        if spec.callback is not None:
            return Target("callback", "callback", {"queue": spec.callback.queue or queue})
        if spec.message is not None:
            return Target("message", "message", {"message": spec.message})
        rules = escalation.rules
        return rules.targets.get(str(spec.target)) if rules is not None else None


__all__ = ["FALLBACK", "HANGUP", "Handoff", "TargetExecutor"]
