"""The worker pool as the call flow sees it: streaming sessions, partials, isolation between
concurrent calls, and recovery when a worker crashes or hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from pbx_router.speech import EnginePool, PoolClosed, RecognitionTimeout, Session, WorkerLost
from pbx_router.speech.faults import FAULT_ENV

from .conftest import chunks, pcm16k, wait_for


async def test_streaming_session_gives_partials_then_final(sphinx_pool: EnginePool) -> None:
    async with sphinx_pool.session() as session:
        assert session.sample_rate == 16000
        for chunk in chunks(pcm16k("refill_01.wav")):
            await session.feed(chunk)
        await wait_for(lambda: session.partial is not None and "refill" in session.partial.text)
        final = await session.finish(timeout=5)
    assert final.is_final and final.engine == "pocketsphinx"
    assert final.text == "i need to refill my prescription"
    assert [w.word for w in final.words] == final.text.split()
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(final.words, final.words[1:], strict=False))
    assert 0.0 < final.confidence <= 1.0
    assert sphinx_pool.stats.busy == 0


async def test_concurrent_calls_on_one_worker_do_not_mix() -> None:
    async with EnginePool.from_config(workers=1) as pool, \
            pool.session() as a, pool.session() as b:
        for ca, cb in zip(chunks(pcm16k("billing_02.wav")), chunks(pcm16k("nurse_01.wav")), strict=False):
            await a.feed(ca)
            await b.feed(cb)
        ta, tb = await asyncio.gather(a.finish(5), b.finish(5))
    assert ta.text == "i want to pay my bill"
    assert tb.text.startswith("i would like to speak")


async def test_killed_worker_fails_its_calls_and_is_replaced(sphinx_pool: EnginePool) -> None:
    victim_pid = sphinx_pool.worker_pids[0]
    async with sphinx_pool.session() as doomed, sphinx_pool.session() as other:
        # Sessions are spread over the least-loaded worker: one on each.
        audio = chunks(pcm16k("doctor_01.wav"))
        for chunk in audio[:20]:
            await doomed.feed(chunk)
            await other.feed(chunk)
        os.kill(victim_pid, signal.SIGKILL)
        await wait_for(lambda: victim_pid not in sphinx_pool.worker_pids)
        results = await asyncio.gather(doomed.finish(5), other.finish(5), return_exceptions=True)
    lost = [r for r in results if isinstance(r, WorkerLost)]
    assert len(lost) == 1, results  # exactly the call on the dead worker falls back to the keypad
    await wait_for(lambda: len(sphinx_pool.worker_pids) == 2 and sphinx_pool.stats.restarts == 1)
    async with sphinx_pool.session() as fresh:
        for chunk in chunks(pcm16k("operator_02.wav")):
            await fresh.feed(chunk)
        assert (await fresh.finish(5)).text == "operator"


async def test_frozen_worker_times_out_and_is_replaced() -> None:
    async with EnginePool.from_config(workers=1) as pool:
        [pid] = pool.worker_pids
        os.kill(pid, signal.SIGSTOP)  # frozen as a whole: alive, but answers nothing, not even a ping
        try:
            async with pool.session() as session:
                await session.feed(pcm16k("yes_02.wav"))
                with pytest.raises(RecognitionTimeout):
                    await session.finish(timeout=0.5)
            await wait_for(lambda: pool.stats.restarts == 1 and len(pool.worker_pids) == 1)
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone once it was killed and reaped
                os.kill(pid, signal.SIGCONT)
        assert pool.worker_pids != [pid]
        async with pool.session() as session:
            await session.feed(pcm16k("no_02.wav"))
            assert (await session.finish(5)).text == "no thank you"


async def test_session_before_start_is_refused() -> None:
    pool = EnginePool.from_config(workers=1)
    with pytest.raises(PoolClosed):
        async with pool.session():
            pass


@pytest.mark.parametrize("batch_ms", [0, 100, 250])
async def test_batching_fed_audio_does_not_change_the_transcript(batch_ms: int) -> None:
    async with EnginePool.from_config(workers=1, feed_batch_ms=batch_ms) as pool, \
            pool.session() as session:
        pcm = pcm16k("billing_02.wav")
        # With batching, odd-sized pieces are fine: a split sample is put back together.
        piece = 333 if batch_ms else 640
        for offset in range(0, len(pcm), piece):
            await session.feed(pcm[offset:offset + piece])
        assert (await session.finish(5)).text == "i want to pay my bill"


def test_negative_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        EnginePool.from_config(workers=1, feed_batch_ms=-1)


async def _say(session: Session, name: str) -> None:
    for chunk in chunks(pcm16k(name)):
        await session.feed(chunk)


async def test_one_stuck_utterance_is_aborted_alone_and_the_worker_serves_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The recogniser hangs for good on any utterance with "operator" in it; all on one worker.
    monkeypatch.setenv(FAULT_ENV, "stall-on:operator")
    async with EnginePool.from_config(workers=1) as pool:
        [pid] = pool.worker_pids
        async with pool.session() as stuck, pool.session() as bill, pool.session() as nurse:
            await _say(stuck, "operator_02.wav")
            await _say(bill, "billing_02.wav")
            await _say(nurse, "nurse_01.wav")
            # The stuck one is asked first: its decode hanging must not hold up the others (which
            # get more time only because a loaded test machine decodes slowly).
            results = await asyncio.gather(stuck.finish(3), bill.finish(15), nurse.finish(15),
                                           return_exceptions=True)
        assert isinstance(results[0], RecognitionTimeout), results
        assert [getattr(r, "text", r) for r in results[1:]] == [
            "i want to pay my bill", "i would like to speak to a nurse"]
        # One stall is not a reason to replace the worker: it goes on serving new calls.
        assert pool.stats.stalls == 1 and pool.stats.restarts == 0 and pool.worker_pids == [pid]
        async with pool.session() as later:
            await _say(later, "no_02.wav")
            assert (await later.finish(5)).text == "no thank you"
        assert pool.worker_pids == [pid]


async def test_repeated_stalls_retire_the_worker_and_its_other_calls_still_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAULT_ENV, "stall-on:operator")
    async with EnginePool.from_config(workers=1) as pool:
        [pid] = pool.worker_pids
        async with pool.session() as meanwhile:
            await _say(meanwhile, "billing_02.wav")
            for _ in range(2):  # two decodes stuck for good in one worker: it is retired
                async with pool.session() as stuck:
                    await _say(stuck, "operator_02.wav")
                    with pytest.raises(RecognitionTimeout):
                        await stuck.finish(2)
            await wait_for(lambda: pool.stats.restarts == 1 and len(pool.worker_pids) == 2)
            # The retiring worker still finishes the utterance it was holding.
            assert (await meanwhile.finish(5)).text == "i want to pay my bill"
        await wait_for(lambda: pid not in pool.worker_pids and len(pool.worker_pids) == 1)
        async with pool.session() as fresh:
            await _say(fresh, "yes_02.wav")
            assert (await fresh.finish(5)).text == "yes please"
