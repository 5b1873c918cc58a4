"""One caller's booking dialog: verify, understand, offer, choose, read back, confirm, act.

Privacy: nothing about the caller's records (not even whether the number is known) is said or
stored on the call record before the date of birth is verified; an unknown number walks the same
verification path, prompt for prompt, as a known number with a wrong date of birth.

Every way out that is not a finished booking/change/cancellation raises ``ToStaff``; the service
then hands the caller to the scheduling team with what was captured (``call.summary.extra``).
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from pbx_router.ari import events as ev
from pbx_router.calls import booking_prompts as p
from pbx_router.calls.conversation import Heard
from pbx_router.scheduling import Appointment, Patient, Slot, SlotQuery, SlotUnavailable
from pbx_router.scheduling.offers import spread_offers
from pbx_router.scheduling.patients import PatientDirectory
from pbx_router.scheduling.service import Reference, SchedulingService
from pbx_router.scheduling.speech import (
    BookingRequest,
    interpret_choice,
    interpret_yes_no,
    offer_media,
    parse_dob_keypad,
    parse_dob_speech,
    parse_request,
    slot_media,
    tokens,
    wants_human,
)
from pbx_router.scheduling.verification import Outcome

if TYPE_CHECKING:
    from pbx_router.calls.conversation import Conversation

T = TypeVar("T")

FLOWS = ("book", "reschedule", "cancel")


class ToStaff(Exception):
    """Hand the caller to a person; ``reason`` goes on the call record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BookingSettings:
    """Tunables of the voice flow (the defaults suit the example clinic)."""

    default_type_id: str = "checkup"  # when the caller names no visit type
    max_offers: int = 3
    candidate_slots: int = 40  # searched to spread the offers over days
    inter_digit_timeout: float = 5.0  # keypad date of birth: silence that ends the entry
    tries_per_question: int = 2  # unclear/silent answers before a person takes over
    offer_rounds: int = 2  # "no" to the read-back, or a slot taken meanwhile: offer again once
    db_timeout: float = 5.0
    goodbye_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Backend:
    scheduling: SchedulingService
    patients: PatientDirectory


class BookingDialog:
    ref: Reference  # clinic reference data, read when the dialog starts

    def __init__(self, conversation: Conversation, backend: Backend, settings: BookingSettings,
                 flow_name: str, request_text: str) -> None:
        self.conversation = conversation
        self.flow = conversation.flow
        self.call = conversation.call
        self.log = conversation.log
        self.backend = backend
        self.settings = settings
        self.flow_name = flow_name
        self.request_text = request_text
        self.tz: ZoneInfo = backend.scheduling.tz
        self.patient: Patient | None = None
        self.hold: Appointment | None = None  # a hold this call placed and has not confirmed
        self.captured: dict[str, Any] = {"flow": flow_name, "step": "start", "verified": False}
        self.call.summary.extra["booking"] = self.captured

    # --- entry -----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.ref = await self._db(self.backend.scheduling.reference())
        if self.flow_name == "book":
            await self._book()
        elif self.flow_name == "reschedule":
            await self._reschedule()
        elif self.flow_name == "cancel":
            await self._cancel()
        else:
            raise ToStaff(f"unknown_flow:{self.flow_name}")

    async def release_hold(self, reason: str) -> None:
        """Give back a slot held but not booked (caller left, said no, went to staff)."""
        hold, self.hold = self.hold, None
        if hold is not None:
            await self._db(self.backend.scheduling.cancel(hold.id, reason))

    # --- the three flows ---------------------------------------------------------------------------

    async def _book(self) -> None:
        request = self._parse(self.request_text)
        await self._verify()
        assert self.patient is not None
        if request.type_id is None and not _has_time_preference(request):
            # Nothing usable in the words that started the flow: ask once what and when.
            self._step("ask_request")
            request = _merge(request, self._parse(await self._ask_preference(p.ASK_REQUEST)))
            self.captured["request"] = _describe_request(request)
        type_id = request.type_id or self.settings.default_type_id
        if type_id not in self.ref.types or not self.ref.types[type_id].phone_bookable:
            raise ToStaff("no_visit_type")
        query = request.to_query(self.tz, default_type_id=type_id, usual_provider_id=self.patient.usual_provider_id)
        await self._offer_choose_and(query, self._hold_and_book)

    async def _reschedule(self) -> None:
        appointment = await self._existing_appointment([p.sound(p.ASK_RESCHEDULE)])
        self._step("ask_new_time")
        request = self._parse(await self._ask_preference(p.ASK_NEW_TIME))
        query = SlotQuery(
            type_id=appointment.type_id,
            provider_id=request.provider_id or appointment.provider_id,
            days=request.days, weekdays=request.weekdays, part_of_day=request.part_of_day,
            earliest=request.to_query(self.tz, default_type_id=appointment.type_id).earliest,
        )

        async def move(slot: Slot) -> bool:
            if not await self._yes_no([p.sound(p.YOU_CHOSE), *slot_media(slot, self.tz), p.sound(p.CONFIRM_MOVE)]):
                return False
            moved = await self._db(self.backend.scheduling.modify(
                appointment.id, slot, idempotency_key=f"{self.call.call_id}:modify:{appointment.id}",
                call_id=self.call.call_id,
            ))
            self.captured.update(step="done", appointment_id=moved.id, replaces_id=appointment.id)
            await self._goodbye(p.RESCHEDULED, outcome="booking:rescheduled")
            return True

        await self._offer_choose_and(query, move, exclude=[appointment.start])

    async def _cancel(self) -> None:
        appointment = await self._existing_appointment([p.sound(p.ASK_CANCEL)])
        cancelled = await self._db(self.backend.scheduling.cancel(appointment.id, "cancelled by caller (phone)"))
        self.captured.update(step="done", appointment_id=cancelled.id)
        await self._goodbye(p.CANCELLED, outcome="booking:cancelled")

    async def _existing_appointment(self, question: Sequence[str]) -> Appointment:
        """The caller's next appointment, read out and agreed to (else a person sorts it out)."""
        await self._verify()
        assert self.patient is not None
        upcoming = await self._db(self.backend.patients.upcoming(self.patient.id, self.backend.scheduling.now()))
        if not upcoming:
            await self.flow.play([p.sound(p.NO_APPOINTMENTS)], timeout=self.settings.goodbye_timeout)
            raise ToStaff("no_upcoming_appointment")
        appointment = _named_or_next(upcoming, self._parse(self.request_text), self.request_text, self.tz)
        self.captured["existing"] = _describe_appointment(appointment)
        self._step("confirm_existing")
        said = [p.sound(p.NEXT_APPOINTMENT), *slot_media(_slot_of(appointment), self.tz), *question]
        if not await self._yes_no(said):
            raise ToStaff("not_that_appointment")
        return appointment

    # --- verification ------------------------------------------------------------------------------

    async def _verify(self) -> None:
        self._step("verify")
        session = await self._db(self.backend.patients.begin_verification(self.call.summary.caller_number))
        prompt = [p.sound(p.ENTER_DOB)]
        attempts = 0
        while session.outcome is Outcome.RETRY:
            entered = await self._date_of_birth(prompt)
            await self._db(session.submit(entered))
            attempts += 1
            self.captured["verification_attempts"] = attempts
            prompt = [p.sound(p.DOB_RETRY)]
        if session.outcome is not Outcome.VERIFIED or session.patient_id is None:
            raise ToStaff("verification_failed")
        patient = await self._db(self.backend.patients.get(session.patient_id))
        if patient is None:  # pragma: no cover - deleted between the two reads
            raise ToStaff("verification_failed")
        self.patient = patient
        self.captured.update(verified=True, patient_id=patient.id, record_number=patient.record_number)

    async def _date_of_birth(self, prompt: Sequence[str]) -> dt.date | None:
        """One entry: keypad MMDDYYYY (``#`` ends, ``*`` starts over) or speech. None: unusable."""
        heard = await self.conversation.turn(prompt)
        today = self.backend.scheduling.now().astimezone(self.tz).date()
        if heard.source == "keypad":
            digits = await self._more_digits(heard.digits, want=8)
            return parse_dob_keypad(digits, today)
        if heard.source == "speech":
            if wants_human(heard.text):
                raise ToStaff("asked_for_person")
            return parse_dob_speech(heard.text, today)
        return None

    async def _more_digits(self, first: str, want: int) -> str:
        call = self.call

        def is_digit(e: ev.Event) -> bool:
            return isinstance(e, ev.ChannelDtmfReceived) and e.channel is not None and e.channel.id == call.channel_id

        typed = ""
        key = first
        while True:
            if key == "*":
                typed = ""
            elif key == "#":
                return typed
            else:
                typed += key
                if len(typed) >= want:
                    return typed
            try:
                e = await call.next_event(is_digit, timeout=self.settings.inter_digit_timeout)
            except TimeoutError:
                return typed
            assert isinstance(e, ev.ChannelDtmfReceived)
            key = e.digit

    # --- offering and choosing -----------------------------------------------------------------

    async def _offer_choose_and(self, query: SlotQuery, act: Callable[[Slot], Awaitable[bool]],
                                exclude: Sequence[dt.datetime] = ()) -> None:
        """Offer slots for ``query``; the chosen one goes to ``act(slot) -> done?``. A "no" or a
        slot taken meanwhile offers again (``offer_rounds``), then a person takes over."""
        declined: list[dt.datetime] = list(exclude)
        for _ in range(self.settings.offer_rounds):
            offers, relaxed = await self._find_offers(query, declined)
            if not offers:
                raise ToStaff("no_free_slots")
            self.captured["offered"] = [_describe_slot(s) for s in offers]
            intro = [p.sound(p.NO_MATCH)] if relaxed else [p.sound(p.OFFER_INTRO)]
            slot = await self._choose(offers, intro)
            self.captured["chosen"] = _describe_slot(slot)
            try:
                if await act(slot):
                    return
            except SlotUnavailable:
                await self.flow.play([p.sound(p.SLOT_TAKEN)], timeout=self.settings.goodbye_timeout)
            declined.append(slot.start)
        raise ToStaff("no_agreed_slot")

    async def _find_offers(self, query: SlotQuery, declined: Sequence[dt.datetime]) -> tuple[list[Slot], bool]:
        """Offers for the caller's wishes; failing that, for the type (and provider) alone."""
        tries = [query]
        if query.days or query.weekdays or query.part_of_day or query.earliest:
            tries.append(SlotQuery(query.type_id, query.provider_id))
        if query.provider_id is not None:
            tries.append(SlotQuery(query.type_id))
        for n, attempt in enumerate(tries):
            slots = await self._candidates(attempt)
            offers = spread_offers(slots, self.tz, max_offers=self.settings.max_offers, exclude=declined)
            if offers:
                return offers, n > 0
        return [], False

    async def _candidates(self, query: SlotQuery) -> list[Slot]:
        """Free slots on at least ``max_offers`` different days when there are that many: a busy
        day can fill a whole search, so the next search starts the day after."""
        scheduling = self.backend.scheduling
        found: list[Slot] = []
        for _ in range(self.settings.max_offers):
            slots = await self._db(scheduling.find_slots(query, limit=self.settings.candidate_slots))
            found.extend(slots)
            days = {s.start.astimezone(self.tz).date() for s in found}
            if len(days) >= self.settings.max_offers or len(slots) < self.settings.candidate_slots:
                break
            next_day = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(0), tzinfo=self.tz)
            query = dataclasses.replace(query, earliest=next_day)
        return found

    async def _choose(self, offers: Sequence[Slot], intro: Sequence[str]) -> Slot:
        self._step("choose")
        menu = [*intro, *offer_media(offers, self.tz, max_offers=len(offers)), p.sound(p.OFFER_CHOOSE)]

        def pick(heard: Heard) -> int | None:
            return interpret_choice(offers, self.tz, heard.text, heard.digits)

        index = await self._ask(menu, accept=pick, again=[p.sound(p.SORRY_AGAIN), *menu[len(intro):]])
        return offers[index]

    async def _hold_and_book(self, slot: Slot) -> bool:
        assert self.patient is not None
        scheduling = self.backend.scheduling
        self.hold = await self._db(scheduling.hold(
            slot, self.patient.id,
            idempotency_key=f"{self.call.call_id}:hold:{slot.provider_id}:{slot.start.isoformat()}",
            call_id=self.call.call_id,
        ))
        self._step("confirm")
        if not await self._yes_no([p.sound(p.YOU_CHOSE), *slot_media(slot, self.tz), p.sound(p.CONFIRM_ASK)]):
            await self.release_hold("declined by caller")
            return False
        booked = await self._db(scheduling.confirm(self.hold.id))
        self.hold = None
        self.captured.update(step="done", appointment_id=booked.id)
        await self._goodbye(p.BOOKED, outcome="booking:booked")
        return True

    # --- asking ----------------------------------------------------------------------------------

    async def _yes_no(self, question: Sequence[str]) -> bool:
        def answer(heard: Heard) -> bool | None:
            return interpret_yes_no(heard.text, heard.digits)

        return await self._ask(question, accept=answer, again=[p.sound(p.SORRY_AGAIN), *question])

    async def _ask_preference(self, prompt: str) -> str:
        """An open question ("when would you like to come in?"): the words, or "" when the caller
        says nothing usable (then the earliest times are offered, which is an answer too)."""
        heard = await self.conversation.turn([p.sound(prompt)])
        if heard.source in ("speech", "keypad") and wants_human(heard.text, heard.digits):
            raise ToStaff("asked_for_person")
        if heard.source == "speech" and heard.text:
            self.captured.setdefault("heard", []).append(heard.text)
            return heard.text
        return ""

    async def _ask(
        self, prompt: Sequence[str], *, accept: Callable[[Heard], T | None], again: Sequence[str] | None = None
    ) -> T:
        """Ask until ``accept(heard)`` gives an answer (not None); silence or an unclear answer asks
        again (``tries_per_question``), "operator" / 0 goes to a person at once."""
        media = list(prompt)
        for _ in range(self.settings.tries_per_question):
            heard = await self.conversation.turn(media)
            if heard.source in ("speech", "keypad") and wants_human(heard.text, heard.digits):
                raise ToStaff("asked_for_person")
            if heard.source in ("speech", "keypad"):
                self.log.debug("booking_heard", step=self.captured["step"], transcript=heard.text, digits=heard.digits)
                answer = accept(heard)
                if answer is not None:
                    if heard.source == "speech":
                        self.captured.setdefault("heard", []).append(heard.text)
                    return answer
            media = list(again if again is not None else prompt)
        raise ToStaff(f"no_answer:{self.captured['step']}")

    # --- endings and helpers -----------------------------------------------------------------------

    async def _goodbye(self, prompt: str, *, outcome: str) -> None:
        self.call.summary.outcome = outcome
        self.log.info("booking_done", flow=self.flow_name, outcome=outcome,
                      appointment_id=self.captured.get("appointment_id"))
        await self.flow.play([p.sound(prompt)], timeout=self.settings.goodbye_timeout)
        await self.flow.hangup_caller()

    def _parse(self, text: str) -> BookingRequest:
        types = tuple(self.ref.types.values())
        providers = tuple(p for p in self.ref.providers.values() if p.active)
        today = self.backend.scheduling.now().astimezone(self.tz).date()
        request = parse_request(text, today, types, providers) if text else BookingRequest()
        self.captured["request"] = _describe_request(request)
        return request

    def _step(self, name: str) -> None:
        self.captured["step"] = name

    async def _db(self, aw: Awaitable[T]) -> T:
        async with asyncio.timeout(self.settings.db_timeout):
            return await aw


def _named_or_next(upcoming: Sequence[Appointment], request: BookingRequest, text: str,
                   tz: ZoneInfo) -> Appointment:
    """The appointment the caller named ("cancel my visit on Friday"), else the next one. A weekday
    name is trusted first: recognisers turn filler into ordinals ("visit on" -> "the third")
    far more often than they invent a weekday."""
    said = set(tokens(text))
    weekdays = {n for n, name in enumerate(calendar.day_name) if name.lower() in said}

    def local(a: Appointment) -> dt.date:
        return a.start.astimezone(tz).date()

    checks: tuple[Callable[[dt.date], bool], ...] = (
        lambda d: d.weekday() in weekdays,
        lambda d: d in request.days or d.weekday() in request.weekdays,
    )
    for matches in checks:
        for appointment in upcoming:
            if matches(local(appointment)):
                return appointment
    return upcoming[0]


def _has_time_preference(request: BookingRequest) -> bool:
    return bool(request.days or request.weekdays or request.part_of_day or request.earliest
                or request.provider_id or request.usual_provider)


def _merge(first: BookingRequest, second: BookingRequest) -> BookingRequest:
    return BookingRequest(
        type_id=second.type_id or first.type_id,
        provider_id=second.provider_id or first.provider_id,
        usual_provider=second.usual_provider or first.usual_provider,
        days=second.days or first.days,
        weekdays=second.weekdays or first.weekdays,
        part_of_day=second.part_of_day or first.part_of_day,
        earliest=second.earliest or first.earliest,
    )


def _slot_of(appointment: Appointment) -> Slot:
    return Slot(appointment.provider_id, appointment.type_id, appointment.start, appointment.end,
                appointment.location_id)


def _describe_slot(slot: Slot) -> dict[str, Any]:
    return {"start": slot.start.isoformat(), "provider": slot.provider_id, "type": slot.type_id}


def _describe_appointment(appointment: Appointment) -> dict[str, Any]:
    return {"id": appointment.id, "start": appointment.start.isoformat(), "provider": appointment.provider_id,
            "type": appointment.type_id}


def _describe_request(request: BookingRequest) -> dict[str, Any]:
    return {
        "type": request.type_id, "provider": request.provider_id, "usual_provider": request.usual_provider,
        "days": sorted(d.isoformat() for d in request.days), "weekdays": sorted(request.weekdays),
        "part_of_day": request.part_of_day.value if request.part_of_day else None,
        "earliest": request.earliest.isoformat() if request.earliest else None,
    }
