"""The composition root: builds every component from the config, owns the top TaskGroup, and
turns signals into a staged shutdown.

Shutdown order (uvicorn/aiohttp's model): a signal only sets a flag; then stop accepting new
calls (they get the dialplan fallback), let in-flight calls finish routing within
``shutdown.drain_timeout``, cancel what is left (those callers also go to the fallback), stop
the events websocket, flush call records, close the store and the HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pbx_router.admin import Names, OverrideBackend
from pbx_router.ari import AriClient, Backoff, EventStream
from pbx_router.ari.errors import AriAuthError, AriError
from pbx_router.calls.call import CallSummary, Route
from pbx_router.calls.supervisor import CallSupervisor, FlowSettings, StaticRouter
from pbx_router.config import Config, DialplanTarget
from pbx_router.log import get_logger
from pbx_router.startup import ExitCode, StartupError

if TYPE_CHECKING:
    from pbx_router.calls.conversation import Brain
    from pbx_router.calls.leadership import Leadership
    from pbx_router.calls.queueing import QueueService
    from pbx_router.queues import OverrideSet, QueuesSection
    from pbx_router.rules import RulesHolder
    from pbx_router.store.retention import RetentionJob

log = get_logger("pbx_router.app")

_T = TypeVar("_T")

# Time budgets that make start-up and shutdown finite whatever is down or stuck.
ARI_CHECK_TIMEOUT_S = 3.0  # the credentials check at start (Asterisk down: we start anyway)
STARTUP_CANCEL_GRACE_S = 2.0  # a start-up step interrupted by SIGTERM gets this to unwind
CALL_CANCEL_GRACE_S = 5.0  # after the drain: cancelled calls' fallbacks (2 bounded attempts)
ADMIN_STOP_TIMEOUT_S = 3.0  # aiohttp's own shutdown_timeout is 2 s
RECORDER_LAST_WRITE_S = 1.0  # CallRecorder.shutdown_write_timeout: then it spools
CLOSE_TIMEOUT_S = 4.0  # ARI session, recogniser workers and store, closed side by side
# SIGTERM ends the process within shutdown.drain_timeout + this (pbx-router run enforces it).
SHUTDOWN_MARGIN_S = CALL_CANCEL_GRACE_S + 2 * ADMIN_STOP_TIMEOUT_S + RECORDER_LAST_WRITE_S + CLOSE_TIMEOUT_S


def check_rtp_range(host: str, first: int, last: int) -> None:
    """At least one port of the externalMedia RTP range can be bound on ``host``; otherwise
    every call would silently go keypad-only, so that is a start-up failure."""
    error: OSError | None = None
    for port in range(first, last + 1):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                error = exc
                if exc.errno != errno.EADDRINUSE:
                    break  # not this port's fault (address not local, permission): all fail alike
                continue
            return
    assert error is not None
    if error.errno == errno.EADDRINUSE:
        raise StartupError(ExitCode.LISTEN, f"every RTP port of media.rtp_port_min-max {host}:{first}-{last} "
                                            "is already in use")
    raise StartupError(ExitCode.LISTEN, f"cannot listen for RTP on media.rtp_host {host} "
                                        f"(port {first}): {error.strerror or error}")

try:  # the store's error type, without importing asyncpg at module import time
    from pbx_router.store.errors import StoreError as StoreErrorLike
except ImportError:  # pragma: no cover
    StoreErrorLike = ConnectionError  # type: ignore[misc, assignment]


try:  # the store's error type, without importing asyncpg at module import time
    from pbx_router.store.errors import StoreError as StoreErrorLike
except ImportError:  # pragma: no cover
    StoreErrorLike = ConnectionError  # type: ignore[misc, assignment]


class Service(Protocol):
    """A call service with a lifetime task in the app's TaskGroup (queues, booking)."""

    async def serve_forever(self) -> None: ...


def queues_restart_required(running: QueuesSection | None, fresh: QueuesSection | None) -> tuple[str, ...]:
    """What of a reloaded ``queues:``/``agents:`` the running daemon does not apply: its queue
    service runs the section loaded at start (callers waiting, agents rung and their presence
    live in it), so changed queues take effect at the next restart. One line per difference."""
    if running == fresh:
        return ()
    old_q = dict(running.queues) if running is not None else {}
    new_q = dict(fresh.queues) if fresh is not None else {}
    old_a = dict(running.agents) if running is not None else {}
    new_a = dict(fresh.agents) if fresh is not None else {}
    changed = [f"queue {n} added" for n in new_q if n not in old_q]
    changed += [f"queue {n} removed" for n in old_q if n not in new_q]
    changed += [f"queue {n} changed" for n in new_q if n in old_q and new_q[n] != old_q[n]]
    changed += [f"agent {n} added" for n in new_a if n not in old_a]
    changed += [f"agent {n} removed" for n in old_a if n not in new_a]
    changed += [f"agent {n} changed" for n in new_a if n in old_a and new_a[n] != old_a[n]]
    what = ", ".join(changed) or "queue settings changed"
    return (f"queues: restart required ({what}); the queues loaded at start stay in force until then",)


def route_from_target(target: Any, reason: str) -> Route:
    if isinstance(target, DialplanTarget):
        return Route("dialplan", context=target.context, extension=target.extension,
                     priority=target.priority, reason=reason)
    return Route("endpoint", endpoint=target.endpoint, timeout=target.timeout, reason=reason)


class RecorderSink:
    """Adapts the call layer's summaries to the store's call records."""

    def __init__(self, recorder: Any, record_cls: Any) -> None:
        self._recorder = recorder
        self._record_cls = record_cls

    def submit(self, summary: CallSummary) -> None:
        self._recorder.submit(self._record_cls(**asdict(summary)))


def _log_reload_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rules_reload_failed", error=repr(task.exception()))


class LazyOverrideRepository:
    """Records overrides in PostgreSQL, opening the store on first use."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def _repo(self) -> Any:
        from pbx_router.store.overrides import OverrideRepository

        try:
            store = await self._app.get_store()
        except ConnectionError as exc:
            from pbx_router.store import StoreError

            raise StoreError(str(exc)) from exc
        return OverrideRepository(store.pool)

    async def save(self, override: Any) -> bool:
        return bool(await (await self._repo()).save(override))

    async def cancel(self, override_id: str, author: str, reason: str, at: datetime) -> bool:
        return bool(await (await self._repo()).cancel(override_id, author, reason, at))

    async def active(self, now: datetime) -> list[Any]:
        return list(await (await self._repo()).active(now))


@contextlib.contextmanager
def _callback_errors() -> Iterator[None]:
    """The store's callback refusals as the admin API's (404 / 409)."""
    from pbx_router.admin.errors import ConflictError, NotFoundError
    from pbx_router.store.errors import CallbackConflictError, CallbackNotFoundError

    try:
        yield
    except CallbackNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except CallbackConflictError as exc:
        raise ConflictError(str(exc)) from None


class DaemonBackend(OverrideBackend):
    """The admin API's view of the live daemon: calls, queues, agents, status, overrides.

    What an override may name is read from the daemon at each request: the queues and agents the
    running queue service has, and the targets, intents and dialplan queues of the rules in
    force, so a reload is seen by the very next request."""

    def __init__(self, app: App) -> None:
        self.app = app
        rules = app.config.rules
        super().__init__(recorder=LazyOverrideRepository(app), on_change=self._changed,
                         rules_reload=app.reload_rules if rules else None)

    def _queue_service(self) -> QueueService | None:
        brain = self.app.brain
        return brain.queue_service if brain is not None else None

    def _changed(self, overrides: OverrideSet) -> None:
        svc = self._queue_service()
        if svc is not None:
            svc.set_overrides(overrides)

    def names(self) -> Names:
        holder = self.app.rules
        if holder is None:  # no rules file (or not loaded yet): there is nothing to name
            return Names(queues=(), targets=frozenset(), intents=frozenset())
        ruleset = holder.current
        svc = self._queue_service()
        section = svc.section if svc is not None else None
        queues = list(section.queues) if section is not None else []
        for target in ruleset.targets.values():  # queues of Asterisk's own Queue()
            name = target.params.get("queue") if target.kind == "queue" else None
            if isinstance(name, str) and name not in queues:
                queues.append(name)
        agents = {a.endpoint: a.name or key for key, a in section.agents.items()} if section is not None else {}
        agent_ids = {key: a.endpoint for key, a in section.agents.items()} if section is not None else {}
        return Names(queues=tuple(queues), targets=frozenset(ruleset.targets), intents=frozenset(ruleset.intents),
                     agents=agents, agent_ids=agent_ids)

    def status(self) -> dict[str, Any]:
        app = self.app
        stream = app.stream
        state = stream.state.value if stream else "stopped"
        calls = self.calls_view()
        out: dict[str, Any] = {
            "ready": bool(stream is not None and stream.ready.is_set()),
            "ari": {"state": state, "connected": state in ("syncing", "ready"),
                    "role": app.leadership.role.value if app.leadership is not None else "starting",
                    **(asdict(stream.stats) if stream else {})},
            "active_calls": len(calls),
            "rules": dict(app.rules.status.to_dict()) if app.rules is not None else None,
            "recorder": asdict(app.recorder.stats) if app.recorder is not None else {},
            "overrides_active": len(self.overrides.active(self.clock())),
        }
        if app.supervisor is not None:
            out["calls"] = asdict(app.supervisor.stats)
        if app.speech is not None:
            out["speech"] = asdict(app.speech.stats)
        return out

    def calls_view(self) -> list[dict[str, Any]]:
        sup = self.app.supervisor
        if sup is None:
            return []
        out = []
        for call in list(sup.calls.values()):
            s = call.summary
            out.append({
                "call_id": call.call_id, "channel_id": call.channel_id,
                "dialled": s.dialled, "started_at": s.started_at.isoformat(),
                "answered_at": s.answered_at.isoformat() if s.answered_at else None, "intent": s.intent,
                "rule": (s.route or {}).get("rule"), "outcome": s.outcome, "adopted": call.adopted,
            })
        return out

    async def readiness(self) -> dict[str, Any]:
        """Ready = the ARI link is up (connected and resynced) and the database answers."""
        stream = self.app.stream
        ari_ok = stream is not None and stream.ready.is_set()
        checks: dict[str, dict[str, Any]] = {
            "ari": {"ok": ari_ok, "state": stream.state.value if stream is not None else "stopped"}}
        store = self.app.store
        if store is None:
            checks["database"] = {"ok": False, "state": "not connected"}
        else:
            ok = await store.ping(timeout=2.0)
            checks["database"] = {"ok": ok, "state": "answering" if ok else "not answering"}
        not_ready = [f"{name}: {check['state']}" for name, check in checks.items() if not check["ok"]]
        return {"ready": not not_ready, "not_ready": not_ready, "checks": checks}

    async def _callbacks(self) -> Any:
        from pbx_router.admin.errors import UnavailableError

        try:
            return (await self.app.get_store()).callbacks
        except (ConnectionError, OSError) as exc:
            raise UnavailableError(f"database unavailable: {exc}") from exc

    async def callbacks_view(self, limit: int, *, include_done: bool = False) -> list[dict[str, Any]]:
        rows = await (await self._callbacks()).list(include_done=include_done, limit=limit)
        return [row.to_dict() for row in rows]

    async def claim_callback(self, callback_id: int, author: str) -> dict[str, Any]:
        repo = await self._callbacks()
        with _callback_errors():
            row = await repo.claim(callback_id, author, self.clock())
        log.info("callback_claimed", callback_id=callback_id, author=author)
        return dict(row.to_dict())

    async def complete_callback(self, callback_id: int, author: str, note: str | None) -> dict[str, Any]:
        repo = await self._callbacks()
        with _callback_errors():
            row = await repo.complete(callback_id, author, self.clock(), note)
        log.info("callback_done", callback_id=callback_id, author=author)
        return dict(row.to_dict())

    def queues_view(self) -> list[dict[str, Any]]:
        svc = self._queue_service()  # without it, queues are Asterisk's: nothing live to show
        return list(svc.queues_view()) if svc is not None else []

    def agents_view(self) -> list[dict[str, Any]]:
        svc = self._queue_service()
        return list(svc.agents_view()) if svc is not None else []


class App:
    def __init__(self, config: Config, *, install_signals: bool = True,
                 on_stop_requested: Callable[[], None] | None = None) -> None:
        self.config = config
        self.install_signals = install_signals
        # Called once, when the first stop is requested (pbx-router run arms its exit deadline).
        self.on_stop_requested = on_stop_requested
        self.stopping = asyncio.Event()
        self.ari: AriClient | None = None
        self.supervisor: CallSupervisor | None = None
        self.stream: EventStream | None = None
        self.store: Any = None
        self.recorder: Any = None
        self.started = asyncio.Event()
        self.rules: RulesHolder | None = None
        self.speech: Any = None
        self.brain: Brain | None = None
        self._reload_task: asyncio.Task[Any] | None = None
        self._store_lock = asyncio.Lock()
        self.admin: Any = None  # the admin API's backend (live views + staff overrides)
        self.admin_url: str | None = None
        self.admin_server: Any = None
        # Optional call services built at start (see _build_services), run in the top TaskGroup.
        self.services: list[Service] = []
        self.retention: RetentionJob | None = None  # the purge job (store/retention.py), built at start
        # Runs the events stream only while this daemon holds the app lock (calls/leadership.py).
        self.leadership: Leadership | None = None

    def request_stop(self) -> None:
        if not self.stopping.is_set() and self.on_stop_requested is not None:
            self.on_stop_requested()
        self.stopping.set()

    async def run(self) -> None:
        """Start, serve until a stop is requested, then stop in stages.

        Raises :class:`StartupError` when the daemon cannot start (whatever was started is
        released first). A stop requested during start-up ends it promptly and without error.
        Every listener is bound before the TaskGroup exists, so a port in use is a start-up
        failure with its own exit code, not a TaskGroup cancelling half-started tasks."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        if self.install_signals:  # first of all: a SIGTERM during a slow start must be heard
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        log.info("daemon_starting", ari=cfg.ari.url, app=cfg.ari.app)
        try:
            started = await self._unless_stopped(self._start(cfg))
            if started is not None:
                await self._serve(cfg, *started)
        finally:
            await self._close()
            if self.install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            log.info("daemon_stopped")

    async def _unless_stopped(self, work: Coroutine[Any, Any, _T]) -> _T | None:
        """Run a start-up step, abandoning it when a stop is requested meanwhile (None then)."""
        task = asyncio.create_task(work, name="daemon-start")
        stop = asyncio.create_task(self.stopping.wait(), name="daemon-start-stop-watch")
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel("pbx-router: stop requested during start-up")
                # A step running in a thread (rules, embedded PostgreSQL) cannot be interrupted;
                # it is left behind rather than waited for.
                await asyncio.wait({task}, timeout=STARTUP_CANCEL_GRACE_S)
        if not task.done() or task.cancelled():
            log.info("daemon_start_abandoned", reason="stop requested during start-up")
            return None
        return task.result()  # raises the step's StartupError

    async def _start(self, cfg: Config) -> tuple[Any, EventStream]:
        """Everything that can fail for a reason an operator must fix, checked before serving,
        cheapest first: data directory, listening ports, ARI credentials, rules, recogniser."""
        from pbx_router.rules import RulesError
        from pbx_router.speech.types import SpeechError
        from pbx_router.store import CallRecord, CallRecorder
        from pbx_router.store.files import private_directory

        data_dir = Path(cfg.data_dir)
        try:
            private_directory(data_dir)  # call records and transcripts: the daemon's user only
            recorder = CallRecorder(self._store_factory(cfg, data_dir), data_dir / "spool",
                                    max_spool_records=cfg.database.spool_max_records)
            probe = data_dir / "spool" / ".write-test"  # records must be able to reach the disk
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StartupError(ExitCode.DATA_DIR, f"data directory {data_dir} cannot be written: "
                                                  f"{exc.strerror or exc}") from exc
        self.recorder = recorder
        self.admin = DaemonBackend(self)
        self.admin_server = await self._start_admin(cfg)
        if cfg.rules and cfg.speech.enabled:
            check_rtp_range(cfg.media.rtp_host, cfg.media.rtp_port_min, cfg.media.rtp_port_max)
        self.ari = ari = AriClient(cfg.ari.url, cfg.ari.username, cfg.ari.password, cfg.ari.app,
                                   request_timeout=cfg.ari.request_timeout)
        await ari.start()
        await self._check_ari(cfg, ari)
        try:
            self.brain = await self._build_brain(cfg)
        except RulesError as exc:
            more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
            first = exc.errors[0] if exc.errors else str(exc)
            raise StartupError(ExitCode.CONFIG, f"routing rules are not valid: {first}{more}") from exc
        except SpeechError as exc:
            raise StartupError(ExitCode.SPEECH, f"the speech recogniser ({cfg.speech.engine}) "
                                                f"could not start: {exc}") from exc
        settings = FlowSettings(
            greeting=tuple(cfg.calls.greeting),
            greeting_timeout=cfg.calls.greeting_timeout,
            fallback=route_from_target(cfg.calls.fallback, "fallback"),
            max_concurrent=cfg.calls.max_concurrent,
        )
        router = StaticRouter(route_from_target(cfg.calls.default_route, "default route (no rules configured)"))
        self.supervisor = supervisor = CallSupervisor(ari, router, settings, RecorderSink(recorder, CallRecord),
                                                      brain=self.brain)
        await self._build_services(cfg)
        self.stream = stream = EventStream(
            ari, supervisor.handle_event, on_connected=supervisor.resync,
            ping_interval=cfg.ari.ping_interval,
            backoff=Backoff(cfg.ari.reconnect_min, cfg.ari.reconnect_max),
        )
        # One active daemon per Asterisk app: the stream runs only under the app lock.
        from pbx_router.calls.leadership import Leadership
        from pbx_router.store.applock import AppLock, lock_key

        self.leadership = Leadership(AppLock(self._lock_connection, lock_key(cfg.ari.url, cfg.ari.app)),
                                     stream, supervisor.hand_over, app=cfg.ari.app,
                                     on_takeover=self._overrides_on_takeover)
        return recorder, stream

    async def _check_ari(self, cfg: Config, ari: AriClient) -> None:
        """Wrong credentials never fix themselves: refuse to start. An Asterisk that is not up
        yet is normal (it may start after us, and its dialplan fallback takes calls meanwhile):
        say so and go on; the events stream keeps trying."""
        try:
            async with asyncio.timeout(min(cfg.ari.request_timeout, ARI_CHECK_TIMEOUT_S)):
                await ari.asterisk_info()
        except AriAuthError as exc:
            raise StartupError(ExitCode.ARI_AUTH, f"Asterisk at {cfg.ari.url} refused the ARI credentials "
                                                  f"of user {cfg.ari.username!r} (HTTP {exc.status})") from exc
        except (AriError, TimeoutError) as exc:
            log.warning("ari_unreachable_at_start", url=cfg.ari.url, error=str(exc) or type(exc).__name__,
                        note="starting anyway: the events stream keeps retrying")

    async def _serve(self, cfg: Config, recorder: Any, stream: EventStream) -> None:
        supervisor = self.supervisor
        assert supervisor is not None
        async with asyncio.TaskGroup() as tg:
            rec_task = tg.create_task(recorder.run(), name="call-recorder")
            retention_task = tg.create_task(self._retention(cfg, recorder).run(), name="retention-purge")
            assert self.leadership is not None
            stream_task = tg.create_task(self.leadership.run(), name="ari-leadership")
            watch_task = None
            if self.rules is not None:
                from pbx_router.rules.watch import watch_rules

                watch_task = tg.create_task(watch_rules(self.rules, cfg.rules), name="rules-watch")
            service_tasks = [
                tg.create_task(svc.serve_forever(), name=f"service-{type(svc).__name__}")
                for svc in self.services
            ]
            restore_task = tg.create_task(self._restore_overrides(), name="overrides-restore")
            self.started.set()
            log.info("daemon_started", ari=cfg.ari.url, app=cfg.ari.app)
            await self.stopping.wait()
            log.info("daemon_stopping", drain_timeout_s=cfg.shutdown.drain_timeout)
            # Stage 1+2: refuse new calls, let in-flight ones finish routing (events still flow),
            # then cancel the rest (they go to the fallback, which has its own bounded retries).
            try:
                async with asyncio.timeout(cfg.shutdown.drain_timeout + CALL_CANCEL_GRACE_S):
                    await supervisor.drain(cfg.shutdown.drain_timeout)
            except TimeoutError:
                log.error("calls_cancel_overran", grace_s=CALL_CANCEL_GRACE_S, left=len(supervisor.tasks))
            await self._bounded("admin_api", self._stop_admin(), ADMIN_STOP_TIMEOUT_S)
            # Stage 3: stop listening to Asterisk.
            stream_task.cancel()
            if watch_task is not None:
                watch_task.cancel()
            for t in service_tasks:
                t.cancel()
            # Retries for as long as the database is down: it must not keep the daemon alive.
            restore_task.cancel()
            retention_task.cancel()
            # Stage 4: records are flushed (or spooled to disk) by the recorder on cancel.
            rec_task.cancel()

    async def _close(self) -> None:
        """Release what start-up or serving acquired. Each step is bounded: stopping must not
        hang on a dead Asterisk, a stuck recogniser or an unreachable database."""
        await self._bounded("admin_api", self._stop_admin(), ADMIN_STOP_TIMEOUT_S)
        steps = []
        if self.ari is not None:
            steps.append(self._bounded("ari", self.ari.close(), CLOSE_TIMEOUT_S))
        if self.speech is not None:
            steps.append(self._bounded("speech", self.speech.close(), CLOSE_TIMEOUT_S))
        steps.append(self._bounded("store", self.aclose(), CLOSE_TIMEOUT_S))
        await asyncio.gather(*steps)

    @staticmethod
    async def _bounded(step: str, work: Awaitable[Any], timeout: float) -> None:
        """One shutdown step: given ``timeout`` seconds, logged (never raised) if it fails."""
        try:
            async with asyncio.timeout(timeout):
                await work
        except TimeoutError:
            log.warning("shutdown_step_timeout", step=step, timeout_s=timeout)
        except Exception as exc:  # noqa: BLE001 - the next steps must still run
            log.warning("shutdown_step_failed", step=step, error=type(exc).__name__)

    def _retention(self, cfg: Config, recorder: Any) -> RetentionJob:
        from pbx_router.store.retention import RetentionJob

        self.retention = RetentionJob(self.get_store, recorder.spool, cfg.retention.days,
                                      interval=cfg.retention.interval_hours * 3600)
        return self.retention

    async def get_store(self) -> Any:
        """The store, opened on first use. A database that is down at start (or a slow embedded
        start) never delays answering calls: whoever needs it first waits, calls do not."""
        from pbx_router.store import Store, StoreError

        async with self._store_lock:
            if self.store is None:
                cfg = self.config
                try:
                    self.store = await Store.open(cfg.database.url, Path(cfg.data_dir),
                                                  max_size=cfg.database.pool_max)
                except StoreError as exc:
                    # Callers treat connection errors as "database down, retry later".
                    raise ConnectionError(str(exc)) from exc
        return self.store

    def _store_factory(self, cfg: Config, data_dir: Path) -> Callable[[], Awaitable[Any]]:
        async def connect() -> Any:
            store = await self.get_store()
            return await store.connect()

        return connect

    async def _start_admin(self, cfg: Config) -> Any:
        if not cfg.admin.enabled:
            return None
        from pbx_router.admin import AdminServer
        from pbx_router.admin.errors import AdminConfigError

        where = f"{cfg.admin.host}:{cfg.admin.port}"
        try:
            server = AdminServer(self.admin, host=cfg.admin.host, port=cfg.admin.port, token=cfg.admin.token)
            await server.start()
        except AdminConfigError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise StartupError(ExitCode.LISTEN, f"admin API port {where} is already in use") from exc
            if isinstance(cause, OSError):
                raise StartupError(ExitCode.LISTEN, f"cannot listen on admin API {where}: "
                                                    f"{cause.strerror or cause}") from exc
            raise StartupError(ExitCode.CONFIG, str(exc)) from exc
        self.admin_url = server.url  # the server logs admin_api_listening itself
        return server

    async def _stop_admin(self) -> None:
        server, self.admin_server = self.admin_server, None
        if server is not None:
            await server.stop()

    async def _restore_overrides(self) -> None:
        """Staff overrides still in force survive a restart (read once the database is up)."""
        delay = 0.5
        while True:
            try:
                restored = await self.admin.restore()
                if restored:
                    log.info("overrides_restored", count=len(restored))
                return
            except (ConnectionError, OSError, StoreErrorLike) as exc:
                log.warning("overrides_restore_retry", error=str(exc)[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _lock_connection(self) -> Any:
        """The app lock's own connection: straight to a configured server (one connection, no
        pool or migrations to wait for, so a standby decides quickly); the embedded server is
        reached through the store, which starts it."""
        url = self.config.database.url
        if url:
            import asyncpg

            return await asyncpg.connect(url, timeout=10.0)
        return await (await self.get_store()).connect()

    async def _overrides_on_takeover(self) -> None:
        """A standby taking over reads the overrides the active daemon's staff added meanwhile."""
        restored = await self.admin.restore()
        log.info("overrides_restored", count=len(restored), on="takeover")

    async def aclose(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close(timeout=CLOSE_TIMEOUT_S - 1)
            self.store = None

    def _on_sighup(self) -> None:
        if self.rules is None:
            log.info("sighup_ignored", reason="no rules file configured")
            return
        if self._reload_task is not None and not self._reload_task.done():
            return  # one reload at a time; the file watcher catches anything newer
        self._reload_task = asyncio.get_running_loop().create_task(self.reload_rules(), name="rules-reload")
        self._reload_task.add_done_callback(_log_reload_failure)

    async def reload_rules(self) -> dict[str, Any]:
        """Validate, then swap atomically; an invalid file leaves the old rules in force."""
        assert self.rules is not None
        status = await asyncio.to_thread(self.rules.reload)
        if status.ok:
            log.info("rules_reloaded", version=status.version)
        else:
            log.error("rules_reload_rejected", errors=list(status.errors)[:20])
        return dict(status.to_dict())

    async def _build_brain(self, cfg: Config) -> Any:
        if not cfg.rules:
            return None
        from pbx_router.calls.caller_facts import StoreCallerFacts
        from pbx_router.calls.conversation import Brain
        from pbx_router.calls.listen import MediaSettings
        from pbx_router.media.ports import PortPool
        from pbx_router.media.vad import EndpointerConfig
        from pbx_router.rules import RulesHolder

        # Loading trains the intent classifier (or reads it from the cache): off the loop.
        self.rules = await asyncio.to_thread(RulesHolder, cfg.rules)
        speech = ports = None
        if cfg.speech.enabled:
            from pbx_router.speech import EnginePool

            speech = EnginePool.from_config(
                engine=cfg.speech.engine, model_path=cfg.speech.model_path, workers=cfg.speech.workers,
                server_url=cfg.speech.server_url, expected_sessions=cfg.speech.expected_sessions,
            )
            self.speech = speech  # before start: a start interrupted by SIGTERM is closed too
            await speech.start()
            ports = PortPool(cfg.media.rtp_port_min, cfg.media.rtp_port_max)
        endpointer = EndpointerConfig(
            end_silence_ms=cfg.speech.end_silence_ms, max_utterance_ms=cfg.speech.max_utterance_ms,
            no_input_timeout_ms=cfg.speech.no_input_ms, early_final_ms=cfg.speech.early_final_ms,
        )

        brain = Brain(
            rules=self.rules, speech=speech, ports=ports,
            media=MediaSettings(rtp_host=cfg.media.rtp_host, format=cfg.media.format, endpointer=endpointer),
            # Previous calls and known_patient (the patient directory, by caller number), from
            # the store once it is open; the conversation bounds it by Brain.facts_timeout.
            caller_facts=StoreCallerFacts(lambda: self.store),
            overrides=lambda now: self.admin.overrides.for_rules(now) if self.admin is not None else (),
            no_input_timeout=cfg.speech.no_input_ms / 1000,
        )
        return brain

    async def _build_services(self, cfg: Config) -> None:
        """The call services the rules ask for, each built with what it needs: daemon-owned
        queues (when the rules file has ``queues:``) and self-service booking. A service's
        ``serve_forever()`` runs in the app's TaskGroup until shutdown."""
        from pbx_router.calls import booking, queueing

        brain, rules, supervisor, ari = self.brain, self.rules, self.supervisor, self.ari
        if brain is None or rules is None or supervisor is None or ari is None:
            return
        section = rules.current.queues_section
        if section is not None:
            queue_service = queueing.build(ari, section, supervisor, self.admin.overrides if self.admin else None)
            brain.queue_service = queue_service
            brain.queue_facts = queue_service.facts  # rule conditions on queues read the live state
            self.services.append(queue_service)
        # The queues run as loaded at start: a reload that changes them says a restart is due.
        rules.check_restart_with(lambda fresh: queues_restart_required(section, fresh.queues_section))
        brain.booking = booking.build(lambda: self.store.pool if self.store is not None else None,
                                      cfg.database.url, lambda: brain.clock())
        self.services.append(brain.booking)
        # Every hand-off (decisions, queue overflow, booking to staff, adopted queue callers, the
        # fallback) goes through this one executor, which keeps emergencies with a person.
        from pbx_router.calls.targets import TargetExecutor

        holder = rules
        brain.targets = TargetExecutor(
            lambda: holder.current, queues=brain.queue_service,
            booking=brain.booking, dialplan_queue_context=brain.dialplan_queue_context,
        )
        brain.targets.attach(supervisor)
