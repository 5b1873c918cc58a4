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
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbx_router.admin import InMemoryBackend
from pbx_router.ari import AriClient, Backoff, EventStream
from pbx_router.calls.call import CallSummary, Route
from pbx_router.calls.supervisor import CallSupervisor, FlowSettings, StaticRouter
from pbx_router.config import Config, DialplanTarget
from pbx_router.log import get_logger

if TYPE_CHECKING:
    from pbx_router.store.retention import RetentionJob

log = get_logger("pbx_router.app")

try:  # the store's error type, without importing asyncpg at module import time
    from pbx_router.store.errors import StoreError as StoreErrorLike
except ImportError:  # pragma: no cover
    StoreErrorLike = ConnectionError  # type: ignore[misc, assignment]


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


class DaemonBackend(InMemoryBackend):
    """The admin API's view of the live daemon: calls, queues, agents, status, overrides."""

    def __init__(self, app: App) -> None:
        self.app = app
        rules = app.config.rules
        super().__init__(recorder=LazyOverrideRepository(app), on_change=self._changed,
                         rules_reload=app.reload_rules if rules else None)

    def _changed(self, overrides: Any) -> None:
        svc = getattr(self.app.brain, "queue_service", None)
        if svc is not None and hasattr(svc, "set_overrides"):
            svc.set_overrides(overrides)

    def status(self) -> dict[str, Any]:
        app = self.app
        stream = app.stream
        self.ready = bool(stream is not None and stream.ready.is_set())
        state = stream.state.value if stream else "stopped"
        self.ari = {"state": state, "connected": state in ("syncing", "ready"),
                    **(asdict(stream.stats) if stream else {})}
        self.calls = self.calls_view()
        if app.recorder is not None:
            self.recorder_stats = asdict(app.recorder.stats)
        if app.rules is not None:
            self.rules_status = dict(app.rules.status.to_dict()) if hasattr(app.rules, "status") else None
        out = super().status()
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
        svc = getattr(self.app.brain, "queue_service", None)
        return list(svc.queues_view()) if svc is not None else super().queues_view()

    def agents_view(self) -> list[dict[str, Any]]:
        svc = getattr(self.app.brain, "queue_service", None)
        return list(svc.agents_view()) if svc is not None else super().agents_view()


class App:
    def __init__(self, config: Config, *, install_signals: bool = True) -> None:
        self.config = config
        self.install_signals = install_signals
        self.stopping = asyncio.Event()
        self.ari: AriClient | None = None
        self.supervisor: CallSupervisor | None = None
        self.stream: EventStream | None = None
        self.store: Any = None
        self.recorder: Any = None
        self.started = asyncio.Event()
        self.rules: Any = None
        self.speech: Any = None
        self.brain: Any = None
        self._reload_task: asyncio.Task[Any] | None = None
        self._store_lock = asyncio.Lock()
        self.admin: Any = None  # the admin API's backend (live views + staff overrides)
        self.admin_url: str | None = None
        # Optional call services built at start (see _build_services), run in the top TaskGroup.
        self.services: list[Any] = []
        self.retention: RetentionJob | None = None  # the purge job (store/retention.py), built at start

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        cfg = self.config
        data_dir = Path(cfg.data_dir)
        from pbx_router.store import CallRecorder
        from pbx_router.store.files import private_directory

        private_directory(data_dir)  # call records and transcripts: the daemon's user only

        recorder = CallRecorder(self._store_factory(cfg, data_dir), data_dir / "spool",
                                max_spool_records=cfg.database.spool_max_records)
        self.recorder = recorder
        self.ari = ari = AriClient(cfg.ari.url, cfg.ari.username, cfg.ari.password, cfg.ari.app,
                                   request_timeout=cfg.ari.request_timeout)
        await ari.start()
        try:
            await self._run(cfg, ari, recorder)
        finally:
            await ari.close()
            if self.speech is not None:
                await self.speech.close()
            await self.aclose()
            log.info("daemon_stopped")

    async def _run(self, cfg: Config, ari: AriClient, recorder: Any) -> None:
        from pbx_router.store import CallRecord

        settings = FlowSettings(
            greeting=tuple(cfg.calls.greeting),
            greeting_timeout=cfg.calls.greeting_timeout,
            fallback=route_from_target(cfg.calls.fallback, "fallback"),
            max_concurrent=cfg.calls.max_concurrent,
        )
        router = StaticRouter(route_from_target(cfg.calls.default_route, "default route (no rules configured)"))
        self.admin = DaemonBackend(self)
        self.brain = await self._build_brain(cfg)
        self.supervisor = supervisor = CallSupervisor(ari, router, settings, RecorderSink(recorder, CallRecord),
                                                      brain=self.brain)
        await self._build_services(cfg)
        self.stream = stream = EventStream(
            ari, supervisor.handle_event, on_connected=supervisor.resync,
            ping_interval=cfg.ari.ping_interval,
            backoff=Backoff(cfg.ari.reconnect_min, cfg.ari.reconnect_max),
        )
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            async with asyncio.TaskGroup() as tg:
                rec_task = tg.create_task(recorder.run(), name="call-recorder")
                retention_task = tg.create_task(self._retention(cfg, recorder).run(), name="retention-purge")
                stream_task = tg.create_task(stream.run(), name="ari-stream")
                watch_task = None
                if self.rules is not None:
                    from pbx_router.rules.watch import watch_rules

                    watch_task = tg.create_task(watch_rules(self.rules, cfg.rules), name="rules-watch")
                service_tasks = [
                    tg.create_task(svc.serve_forever(), name=f"service-{type(svc).__name__}")
                    for svc in self.services if hasattr(svc, "serve_forever")
                ]
                admin_server = await self._start_admin(cfg)
                restore_task = tg.create_task(self._restore_overrides(), name="overrides-restore")
                self.started.set()
                log.info("daemon_started", ari=cfg.ari.url, app=cfg.ari.app)
                await self.stopping.wait()
                log.info("daemon_stopping")
                # Stage 1+2: refuse new calls, let in-flight ones finish routing (events still flow).
                await supervisor.drain(cfg.shutdown.drain_timeout)
                if admin_server is not None:
                    await admin_server.stop()
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
        finally:
            if self.install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

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

        server = AdminServer(self.admin, host=cfg.admin.host, port=cfg.admin.port, token=cfg.admin.token)
        await server.start()
        self.admin_url = server.url
        log.info("admin_api_listening", url=server.url)
        return server

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

    async def aclose(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()
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
        from pbx_router.calls.conversation import Brain, CallerFacts
        from pbx_router.calls.listen import MediaSettings
        from pbx_router.media.ports import PortPool
        from pbx_router.media.vad import EndpointerConfig
        from pbx_router.rules import RulesHolder

        self.rules = RulesHolder(cfg.rules)
        speech = ports = None
        if cfg.speech.enabled:
            from pbx_router.speech import EnginePool

            speech = EnginePool.from_config(
                engine=cfg.speech.engine, model_path=cfg.speech.model_path, workers=cfg.speech.workers,
                server_url=cfg.speech.server_url, expected_sessions=cfg.speech.expected_sessions,
            )
            await speech.start()
            self.speech = speech
            ports = PortPool(cfg.media.rtp_port_min, cfg.media.rtp_port_max)
        endpointer = EndpointerConfig(
            end_silence_ms=cfg.speech.end_silence_ms, max_utterance_ms=cfg.speech.max_utterance_ms,
            no_input_timeout_ms=cfg.speech.no_input_ms,
        )

        async def caller_facts(number: str, before: datetime) -> CallerFacts:
            if self.store is None:
                return CallerFacts()
            recent = await self.store.calls.recent_times(number, timedelta(days=30))
            # The current call may already be recorded: it is not a "previous" call.
            return CallerFacts(recent_calls=[t for t in recent if t < before])

        brain = Brain(
            rules=self.rules, speech=speech, ports=ports,
            media=MediaSettings(rtp_host=cfg.media.rtp_host, format=cfg.media.format, endpointer=endpointer),
            caller_facts=caller_facts,
            overrides=lambda now: self.admin.overrides.for_rules(now) if self.admin is not None else (),
            no_input_timeout=cfg.speech.no_input_ms / 1000,
        )
        return brain

    async def _build_services(self, cfg: Config) -> None:
        """Optional call services (daemon-owned queues, self-service booking), each built by its
        own module's ``build(app)`` when that module is present; ``None`` means not configured.
        A service's ``serve_forever()`` runs in the app's TaskGroup until shutdown."""
        import importlib
        import importlib.util

        if self.brain is None:
            return
        for attr, module in (("queue_service", "pbx_router.calls.queueing"), ("booking", "pbx_router.calls.booking")):
            if importlib.util.find_spec(module) is None:
                continue
            service = await importlib.import_module(module).build(self)
            setattr(self.brain, attr, service)
            if service is not None:
                self.services.append(service)
        # Every hand-off (decisions, queue overflow, booking to staff, adopted queue callers, the
        # fallback) goes through this one executor, which keeps emergencies with a person.
        from pbx_router.calls.targets import TargetExecutor

        rules = self.rules
        self.brain.targets = TargetExecutor(
            lambda: rules.current if rules is not None else None, queues=self.brain.queue_service,
            booking=self.brain.booking, dialplan_queue_context=self.brain.dialplan_queue_context,
        )
        if self.supervisor is not None:
            self.brain.targets.attach(self.supervisor)
