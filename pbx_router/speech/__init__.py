"""Speech recognition adapter: one recogniser interface, three engines, a worker pool.

Engines: ``pocketsphinx`` (default; worker processes, domain language model built from the
phrase corpus), ``vosk`` (in process, threads, model directory from config), ``vosk-server``
(alphacep's websocket protocol, for a separate STT box).
"""

from pbx_router.speech.factory import DEFAULT_ENGINE, ENGINES, RecognizerFactory, build_engine
from pbx_router.speech.pool import EnginePool, PoolStats, Session
from pbx_router.speech.types import (
    EngineUnavailable,
    PoolClosed,
    RecognitionTimeout,
    Recognizer,
    SpeechError,
    Transcript,
    Word,
    WorkerLost,
)

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EngineUnavailable",
    "EnginePool",
    "PoolClosed",
    "PoolStats",
    "RecognitionTimeout",
    "Recognizer",
    "RecognizerFactory",
    "Session",
    "SpeechError",
    "Transcript",
    "Word",
    "WorkerLost",
    "build_engine",
]
