"""One active daemon per Asterisk app: the active one holds a lock, the others stand by.

Asterisk gives a Stasis app to one websocket at a time; a second daemon connecting for the same
app replaces the first (ApplicationReplaced), and each resync adopts the other's callers. So the
events stream runs only in the daemon that holds the app lock (store/applock.py, a PostgreSQL
advisory lock on a connection kept open). The policy, in one place:

- **Standby**: the lock is held by another session. Do not connect the events websocket, adopt
  nothing, readiness says ``ari: standby``; ask again every ``retry_s`` (1 s). Logged once at
  info (``standby``, with who holds it), then at debug every ``STANDBY_DEBUG_EVERY_S``. A standby
  that loses the database stays standby: it knows another daemon is active.
- **Active**: the lock is ours. Connect, resync (adopting every caller in Stasis), serve. The
  lock's connection is checked every ``retry_s``.
- **Lock lost** (the lock's connection dropped: database restart, network): ask for it again at
  once and every ``retry_s`` while going on serving. Got it back: nothing happened. Another
  daemon holds it: step down now (close the websocket, hand our calls over, stand by). The
  database cannot be asked at all: go on serving without the lock until it answers (the lock can
  only be taken through that database, so no standby of ours can have become active meanwhile; a
  daemon that reaches it while we cannot takes the lock and connects, which replaces us on
  Asterisk: see the next point). The README's promise holds: calls are answered while
  PostgreSQL is down, also by a daemon started while it is down (it has never seen another
  daemon holding the lock, so it serves without it, and takes it as soon as the database answers,
  or steps down if another daemon got there first).
- **Replaced** (ApplicationReplaced: some other websocket took our app, e.g. a daemon that could
  not reach the database, a daemon configured with another database or ARI URL, a test tool):
  never reconnect at once (that is the reconnect storm in which both lose events). Hand our
  calls over, wait ``replaced_backoff`` (5 s doubling to 5 min), then start again from the lock.
  The lock, if ours, is kept meanwhile: no standby on our database should join the fight.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pbx_router.ari.stream import Backoff, StreamState
from pbx_router.log import get_logger

log = get_logger("pbx_router.leadership")

STANDBY_RETRY_S = 1.0  # a standby takes over within this (+ connect + resync) of the lock's release
STANDBY_DEBUG_EVERY_S = 30.0
REPLACED_BACKOFF_MIN_S = 5.0
REPLACED_BACKOFF_MAX_S = 300.0
REPLACED_RESET_AFTER_S = 600.0  # served this long without being replaced: the backoff starts over
TAKEOVER_HOOK_TIMEOUT_S = 2.0  # what a takeover may spend catching up before it connects


class AppLockLike(Protocol):
    held: bool
    last_error: str

    async def try_acquire(self) -> bool | None: ...  # True ours, False someone else's, None unknown
    async def check(self) -> bool: ...
    async def holder(self) -> Any: ...
    async def close(self) -> None: ...


class StreamLike(Protocol):
    state: StreamState

    async def run(self) -> None: ...  # returns only when replaced on Asterisk


class Role(enum.Enum):
    STARTING = "starting"
    STANDBY = "standby"
    ACTIVE = "active"  # the lock is ours
    ACTIVE_UNLOCKED = "active-unlocked"  # the database cannot be asked: serving without the lock
    REPLACED = "replaced"


class _StepDown(Exception):
    """Internal: leave the active role (another daemon has the lock)."""


class Leadership:
    """``run()`` until cancelled: wait for the lock, serve while holding it, step down when the
    policy above says so. ``role`` is what the daemon currently is."""

    def __init__(
        self,
        lock: AppLockLike,
        stream: StreamLike,
        hand_over: Callable[[], Awaitable[None]],
        *,
        app: str,
        retry_s: float = STANDBY_RETRY_S,
        replaced_backoff: Backoff | None = None,
        on_takeover: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.lock = lock
        self.stream = stream
        self.hand_over = hand_over
        self.app = app
        self.retry_s = retry_s
        self.replaced_backoff = replaced_backoff or Backoff(REPLACED_BACKOFF_MIN_S, REPLACED_BACKOFF_MAX_S)
        # Run (bounded) when a standby becomes active, before it connects: catch up with what the
        # active daemon changed meanwhile (staff overrides in PostgreSQL).
        self.on_takeover = on_takeover
        self.role = Role.STARTING
        self.takeovers = 0  # times this daemon became active

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wait_for_turn()
                self.takeovers += 1
                started = loop.time()
                replaced = await self._serve()
                if not replaced:
                    continue  # stepped down: stand by for the lock
                if loop.time() - started >= REPLACED_RESET_AFTER_S:
                    self.replaced_backoff.reset()
                delay = self.replaced_backoff.next_delay()
                self.role = Role.REPLACED
                self.stream.state = StreamState.REPLACED
                log.warning("app_replaced_backing_off", app=self.app, retry_in_s=round(delay, 1),
                            note="another program holds our Stasis app on Asterisk; not fighting it")
                await asyncio.sleep(delay)
        finally:
            await self.lock.close()

    async def _wait_for_turn(self) -> None:
        """Return once this daemon may serve: the lock is ours, or nobody can know (database down)."""
        loop = asyncio.get_running_loop()
        said_standby = False
        last_debug = loop.time()
        while True:
            got = await self.lock.try_acquire()
            if got:
                self.role = Role.ACTIVE
                log.info("app_lock_acquired", app=self.app, role="active", took_over=said_standby)
                if said_standby:
                    await self._caught_up()
                return
            if got is None and said_standby:
                # We know another daemon is active; losing sight of the database does not make
                # it any less so. (Should it die while the database is down too, nobody takes
                # Stasis calls and the dialplan fallback rings a person.)
                if loop.time() - last_debug >= STANDBY_DEBUG_EVERY_S:
                    last_debug = loop.time()
                    log.debug("standby_database_unreachable", app=self.app, error=self.lock.last_error[:200])
                await asyncio.sleep(self.retry_s)
                continue
            if got is None:
                self.role = Role.ACTIVE_UNLOCKED
                log.warning("app_lock_unavailable", app=self.app, error=self.lock.last_error[:200],
                            note="database unreachable: serving calls without the lock, asking every "
                                 f"{self.retry_s:g} s")
                return
            self.role = Role.STANDBY
            self.stream.state = StreamState.STANDBY
            if not said_standby:
                said_standby = True
                holder = await self.lock.holder()
                log.info("standby", app=self.app, retry_s=self.retry_s,
                         active=getattr(holder, "application_name", None),
                         note="another daemon is active for this Asterisk app; taking over when it goes")
            elif loop.time() - last_debug >= STANDBY_DEBUG_EVERY_S:
                last_debug = loop.time()
                log.debug("standby_waiting", app=self.app)
            await asyncio.sleep(self.retry_s)

    async def _caught_up(self) -> None:
        if self.on_takeover is None:
            return
        try:
            async with asyncio.timeout(TAKEOVER_HOOK_TIMEOUT_S):
                await self.on_takeover()
        except Exception as exc:  # noqa: BLE001 - answering calls comes first
            log.warning("takeover_catch_up_failed", error=str(exc)[:200] or type(exc).__name__)

    async def _serve(self) -> bool:
        """Run the events stream while the policy allows. True when Asterisk replaced us."""
        stream_task = asyncio.get_running_loop().create_task(self.stream.run(), name="ari-stream")
        stepped_down = False
        try:
            while True:
                await asyncio.wait({stream_task}, timeout=self.retry_s)
                if stream_task.done():
                    stream_task.result()  # a bug in the stream surfaces here
                    await self.hand_over()
                    return True
                try:
                    await self._keep_lock()
                except _StepDown:
                    stepped_down = True
                    return False
        finally:
            if not stream_task.done():
                stream_task.cancel()
                await asyncio.gather(stream_task, return_exceptions=True)
            if stepped_down:
                self.role = Role.STANDBY
                self.stream.state = StreamState.STANDBY
                await self.hand_over()

    async def _keep_lock(self) -> None:
        if self.role is Role.ACTIVE and await self.lock.check():
            return
        was = self.role
        got = await self.lock.try_acquire()
        if got:
            if was is Role.ACTIVE:
                log.info("app_lock_reacquired", app=self.app)
            else:
                log.info("app_lock_acquired", app=self.app, role="active")
            self.role = Role.ACTIVE
        elif got is None:
            if was is Role.ACTIVE:
                log.warning("app_lock_lost", app=self.app, error=self.lock.last_error[:200],
                            note="database unreachable: serving on without the lock until it answers")
            self.role = Role.ACTIVE_UNLOCKED
        else:
            holder = await self.lock.holder()
            log.error("app_lock_taken_stepping_down", app=self.app,
                      active=getattr(holder, "application_name", None),
                      note="another daemon holds the lock: closing the websocket and standing by")
            raise _StepDown
