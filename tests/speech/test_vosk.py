"""Vosk in process and behind a vosk-server, on a real Vosk model (Korean: the only one installable
offline) and a real Korean clip made with espeak-ng."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from rapidfuzz.distance import Levenshtein

from pbx_router.speech import EnginePool, EngineUnavailable, WorkerLost, build_engine
from pbx_router.speech.engines.vosk_engine import parse_result
from pbx_router.testing.vosk_server import VoskServer

from .conftest import chunks, pcm16k, vosk_ko_model, wait_for

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_vosk_recognizer_streams_partials_and_a_final_with_word_timings() -> None:
    rec = build_engine("vosk", model_path=str(vosk_ko_model()))
    partials = [p for c in chunks(pcm16k("ko_reservation.wav"), ms=100) if (p := rec.accept(c))]
    final = rec.final()
    assert partials and not any(p.is_final for p in partials)
    assert final.is_final and final.engine == "vosk"
    assert HANGUL.search(final.text), final.text
    assert [w.word for w in final.words] == final.text.split()
    assert all(w.start_s < w.end_s for w in final.words)
    assert 0.0 < final.confidence <= 1.0
    # The recogniser is reusable: the next utterance starts from scratch.
    rec.accept(pcm16k("ko_reservation.wav"))
    assert rec.final().text == final.text


def test_vosk_without_a_model_directory_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineUnavailable, match="not found"):
        build_engine("vosk", model_path=str(tmp_path / "missing"))
    with pytest.raises(EngineUnavailable, match="not a Vosk model"):
        build_engine("vosk", model_path=str(tmp_path))


@pytest.mark.parametrize("raw", ["", "{", "[]", '{"result": [{"start": 1}]}'])
def test_malformed_result_json_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_result(raw, is_final=True)


def test_result_json_shapes() -> None:
    assert parse_result('{"partial" : "a b"}', is_final=False).text == "a b"
    final = parse_result(json.dumps({"result": [{"word": "x", "start": 0.1, "end": 0.4, "conf": 0.5}],
                                     "text": "x"}), is_final=True)
    assert final.text == "x" and final.confidence == 0.5 and final.words[0].end_s == 0.4
    alt = parse_result('{"alternatives": [{"text": "best", "confidence": 300.0}]}', is_final=True)
    assert alt.text == "best"
    assert parse_result('{"text": ""}', is_final=True).confidence == 0.0


async def test_vosk_pool_on_threads() -> None:
    async with EnginePool.from_config(engine="vosk", model_path=vosk_ko_model(), workers=2) as pool:
        async with pool.session() as session:
            for chunk in chunks(pcm16k("ko_reservation.wav")):
                await session.feed(chunk)  # returns at once: decoding runs on the threads
            await wait_for(lambda: session.partial is not None and bool(HANGUL.search(session.partial.text)))
            final = await session.finish(timeout=10)
        assert HANGUL.search(final.text)
        assert pool.stats.workers == 2 and pool.stats.busy == 0


async def test_vosk_server_engine_matches_in_process_vosk() -> None:
    expected = build_engine("vosk", model_path=str(vosk_ko_model()))
    for chunk in chunks(pcm16k("ko_reservation.wav"), ms=100):  # same chunking as below
        expected.accept(chunk)
    in_process = expected.final().text
    async with VoskServer(vosk_ko_model(), sample_rate=16000) as server:
        async with EnginePool.from_config(engine="vosk-server", server_url=server.url) as pool:
            async with pool.session() as session:
                for chunk in chunks(pcm16k("ko_reservation.wav"), ms=100):
                    await session.feed(chunk)
                final = await session.finish(timeout=10)
                assert session.partial is not None
        assert server.connections == 1
    assert final.engine == "vosk-server" and final.is_final
    assert final.text == in_process
    assert [w.word for w in final.words] == final.text.split()


async def test_vosk_server_unreachable_or_gone_mid_call() -> None:
    async with VoskServer(vosk_ko_model(), sample_rate=16000) as server:
        url = server.url
        async with EnginePool.from_config(engine="vosk-server", server_url=url) as pool:
            async with pool.session() as session:
                await session.feed(pcm16k("ko_reservation.wav")[:3200])
                await server.close()  # the STT box goes away mid-utterance
                with pytest.raises((WorkerLost, EngineUnavailable)):
                    await session.feed(b"\0" * 3200)
                    await session.finish(timeout=5)
    async with EnginePool.from_config(engine="vosk-server", server_url=url) as pool:
        with pytest.raises(EngineUnavailable):
            async with pool.session():
                pass


async def test_local_vosk_server_speaks_the_reference_protocol() -> None:
    async with VoskServer(vosk_ko_model(), sample_rate=16000) as server, \
            aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
        await ws.send_bytes(pcm16k("ko_reservation.wav")[:8000])
        first = json.loads(await ws.receive_str())
        assert "partial" in first or "result" in first
        await ws.send_str('{"eof" : 1}')
        last = json.loads(await ws.receive_str())
        assert "text" in last


def test_vosk_abandoned_utterance_does_not_colour_the_next_one() -> None:
    # reset() after a half-heard utterance (a caller hung up mid-sentence) must leave the
    # recogniser as a fresh one: the next caller gets the same transcript a new recogniser gives.
    fresh = build_engine("vosk", model_path=str(vosk_ko_model()))
    for chunk in chunks(pcm16k("ko_reservation.wav"), ms=100):
        fresh.accept(chunk)
    expected = fresh.final().text
    reused = build_engine("vosk", model_path=str(vosk_ko_model()))
    for chunk in chunks(pcm16k("refill_01.wav"), ms=100)[:15]:
        reused.accept(chunk)
    reused.reset()
    for chunk in chunks(pcm16k("ko_reservation.wav"), ms=100):
        reused.accept(chunk)
    assert reused.final().text == expected


async def test_vosk_pool_serves_more_calls_than_prebuilt_recognisers() -> None:
    async with EnginePool.from_config(engine="vosk", model_path=vosk_ko_model(), workers=2,
                                      expected_sessions=1) as pool:
        async with pool.session() as a, pool.session() as b, pool.session() as c:
            audio = chunks(pcm16k("ko_reservation.wav"))
            for chunk in audio:
                for s in (a, b, c):
                    await s.feed(chunk)
            finals = await asyncio.gather(a.finish(10), b.finish(10), c.finish(10))
            assert pool.stats.busy == 3
        # Every session heard the whole utterance. (Not necessarily the very same string: each
        # decode takes what was buffered by then, and Kaldi's last word can depend on where the
        # chunks fell: seen in CI, "... 학업 이 나" against "... 학업 이 니다".)
        assert all(HANGUL.search(f.text) and len(f.text.split()) >= 4 for f in finals)
        first = finals[0].text.split()
        for f in finals[1:]:
            assert Levenshtein.distance(first, f.text.split()) <= max(1, len(first) // 4), (first, f.text)
        assert pool.stats.busy == 0 and pool.stats.restarts == 0
