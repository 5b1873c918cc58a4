"""Self-service appointments by phone: the service ``app.py`` builds (``build(app)``) and the
conversation calls for a ``schedule`` target (``await booking.run(conversation, flow, decision)``).

The dialog itself is in ``booking_dialog``; this module owns the database side (opened lazily on
the first booking call, so nothing here delays answering calls) and the hand-over to a person:
the ``scheduling`` queue (daemon-owned when the queue service has it, else the dialplan's
``router-queue,scheduling``), with what was captured on the call record (``extra["booking"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from pbx_router.calls import booking_prompts as prompts
from pbx_router.calls.booking_dialog import (
    FLOWS,
    Backend,
    BookingDialog,
    BookingSettings,
    ToStaff,
)
from pbx_router.calls.call import CallerGone
from pbx_router.calls.listen import Listener
from pbx_router.calls.targets import Handoff
from pbx_router.log import get_logger
from pbx_router.rules.decision import Target
from pbx_router.scheduling.patients import PatientDirectory
from pbx_router.scheduling.service import SchedulingService

if TYPE_CHECKING:
    from pbx_router.calls.conversation import Conversation
    from pbx_router.rules import Decision

log = get_logger("pbx_router.calls.booking")

STAFF_QUEUE = "scheduling"

PoolSource = Callable[[], Awaitable[asyncpg.Pool]]


class SchedulingUnavailable(Exception):
    """The scheduling database cannot be reached right now."""


class BookingService:
    """One per daemon. ``run(conversation, flow, decision)`` handles one caller; ``run()`` with no
    arguments is the service's own lifetime task in the app's TaskGroup (it closes what it opened
    when cancelled)."""

    def __init__(self, pool_source: PoolSource, *, clock: Callable[[], Any] | None = None,
                 settings: BookingSettings | None = None, close: Callable[[], Awaitable[None]] | None = None,
                 country_code: str = "1") -> None:
        self._pool_source = pool_source
        self._clock = clock
        self.settings = settings or BookingSettings()
        self._close = close
        self._country_code = country_code
        self._backend: Backend | None = None
        self._lock = asyncio.Lock()

    async def backend(self) -> Backend:
        """The scheduling services, built on first use (reads the clinic's time zone)."""
        if self._backend is not None:
            return self._backend
        async with self._lock:
            if self._backend is None:
                try:
                    async with asyncio.timeout(self.settings.db_timeout):
                        pool = await self._pool_source()
                        options: dict[str, Any] = {} if self._clock is None else {"clock": self._clock}
                        scheduling = await SchedulingService.create(pool, **options)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise SchedulingUnavailable(str(exc) or type(exc).__name__) from exc
                self._backend = Backend(
                    scheduling,
                    PatientDirectory(
                        pool, scheduling.tz, clock=scheduling.now, default_country_code=self._country_code
                    ),
                )
        return self._backend

    async def run(self, conversation: Conversation, flow_name: str = "book",
                  decision: Decision | None = None) -> None:
        """One caller's self-service flow (``Brain.booking``)."""
        await self.handle(conversation, flow_name, decision)

    async def serve_forever(self) -> None:
        """The service's lifetime task in the app's TaskGroup: closes its pool at the end."""
        try:
            await asyncio.Event().wait()  # nothing to do between calls; holds expire by themselves
        finally:
            if self._close is not None:
                await self._close()

    async def handle(self, conversation: Conversation, flow_name: str, decision: Decision | None) -> None:
        call = conversation.call
        captured: dict[str, Any] = {"flow": flow_name, "step": "start", "verified": False}
        call.summary.extra["booking"] = captured
        dialog: BookingDialog | None = None
        await _listen_again(conversation)
        try:
            if flow_name not in FLOWS:
                raise ToStaff(f"unknown_flow:{flow_name}")
            try:
                backend = await self.backend()
            except SchedulingUnavailable as exc:
                conversation.log.warning("booking_unavailable", error=str(exc))
                raise ToStaff("scheduling_unavailable") from None
            dialog = BookingDialog(conversation, backend, self.settings, flow_name, _request_text(conversation))
            captured = dialog.captured
            await dialog.run()
        except ToStaff as why:
            await conversation.stop_listening()
            await self._release(dialog, "handed to staff")
            await self.to_staff(conversation, why.reason, captured, decision)
        except (CallerGone, asyncio.CancelledError):
            await self._release(dialog, "caller left")
            raise
        except Exception as exc:  # noqa: BLE001 - whatever broke, a person finishes the booking
            conversation.log.warning("booking_failed", step=captured.get("step"), error=type(exc).__name__,
                                     detail=str(exc)[:200])
            await conversation.stop_listening()
            await self._release(dialog, "handed to staff")
            await self.to_staff(conversation, f"error:{type(exc).__name__}", captured, decision)
        finally:
            await conversation.stop_listening()

    async def _release(self, dialog: BookingDialog | None, reason: str) -> None:
        if dialog is None:
            return
        try:
            await dialog.release_hold(reason)
        except Exception as exc:  # noqa: BLE001 - an unreleased hold expires by itself
            log.warning("hold_release_failed", error=type(exc).__name__)

    async def to_staff(self, conversation: Conversation, reason: str, captured: dict[str, Any],
                       decision: Decision | None) -> None:
        """The scheduling team takes over, with what was captured on the call record."""
        flow, call = conversation.flow, conversation.call
        captured["outcome"] = "to_staff"
        captured["reason"] = reason
        call.summary.extra["booking"] = captured
        conversation.log.info("booking_to_staff", flow=captured.get("flow"), step=captured.get("step"),
                              reason=reason)
        if call.gone.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await flow.play([prompts.sound(prompts.TO_STAFF)], timeout=15)
        # The scheduling team's queue (daemon-owned, else the dialplan's), through the target
        # executor like every hand-off: if it overflows, the caller goes where it says.
        staff = Target(STAFF_QUEUE, "queue", {"queue": STAFF_QUEUE}, "the scheduling team")
        handoff = Handoff(priority=decision.priority if decision else 5, intent=decision.intent if decision else None,
                          reason=f"booking handed to staff: {reason}", decision=decision)
        await conversation.brain.executor().send(flow, staff, handoff, rules=conversation.ruleset)


async def _listen_again(conversation: Conversation) -> None:
    """Hear the caller again for the dialog. The conversation's own listener was stopped before the
    decision was acted on; this one gets ids of its own (a channel id cannot be reused; see
    ``calls/listen.py``)."""
    brain = conversation.brain
    if brain.speech is None or brain.ports is None or conversation.listener is not None:
        return
    listener = Listener(conversation.call, conversation.ari, conversation.flow.registrar, brain.speech,
                        brain.ports, brain.media)
    try:
        await listener.start()
    except Exception as exc:  # noqa: BLE001 - without ears the keypad still works
        conversation.log.warning("booking_listen_failed", error=str(exc) or type(exc).__name__)
        await listener.stop()
        return
    conversation.listener = listener


def _request_text(conversation: Conversation) -> str:
    """The caller's words that led here (the last turn), when that turn was speech."""
    heard = conversation.last_heard
    return heard.text if heard is not None and heard.source == "speech" else ""


def build(store: Callable[[], asyncpg.Pool | None], database_url: str | None,
          clock: Callable[[], Any]) -> BookingService:
    """The daemon's booking service (``App._build_services``). ``store``: the daemon store's pool
    once it is open (the call recorder opens it lazily); until then, with a configured
    ``database_url``, a small pool of its own."""
    own: list[asyncpg.Pool] = []
    lock = asyncio.Lock()

    async def pool() -> asyncpg.Pool:
        shared = store()
        if shared is not None:
            return shared
        if not database_url:
            raise SchedulingUnavailable("the embedded database is not open yet")
        async with lock:
            if not own:
                own.append(await asyncpg.create_pool(database_url, min_size=0, max_size=4, timeout=5))
        return own[0]

    async def close() -> None:
        for p in own:
            with contextlib.suppress(Exception):  # TimeoutError included; a cancel propagates
                async with asyncio.timeout(5):
                    await p.close()

    return BookingService(pool, clock=clock, close=close)
