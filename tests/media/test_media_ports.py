"""The RTP port range: every port handed out comes back, whatever happens to the call."""

from __future__ import annotations

import asyncio

import pytest

from pbx_router.media.codecs import FORMATS
from pbx_router.media.endpoint import RtpEndpoint
from pbx_router.media.ports import PortPool, PortsExhausted


def test_hands_out_each_port_once_then_refuses() -> None:
    pool = PortPool(40000, 40003)
    ports = {pool.acquire() for _ in range(4)}
    assert ports == {40000, 40001, 40002, 40003} and pool.in_use == 4
    with pytest.raises(PortsExhausted):
        pool.acquire()
    pool.release(40002)
    assert pool.acquire() == 40002


def test_a_released_port_rests_while_others_are_free() -> None:
    pool = PortPool(40000, 40009)
    first = pool.acquire()
    pool.release(first)
    assert pool.acquire() != first  # stragglers of the last call's RTP must not reach the next


def test_double_release_is_harmless_and_foreign_ports_are_refused() -> None:
    pool = PortPool(40000, 40001)
    port = pool.acquire()
    pool.release(port)
    pool.release(port)
    assert pool.in_use == 0 and pool.available == 2
    with pytest.raises(ValueError):
        pool.release(50000)
    with pytest.raises(ValueError):
        PortPool(10, 5)


def test_lease_gives_back_on_error() -> None:
    pool = PortPool(40000, 40001)
    with pytest.raises(RuntimeError):
        with pool.lease() as port:
            assert pool.is_leased(port)
            raise RuntimeError("call failed")
    assert pool.in_use == 0


async def test_no_leak_when_calls_are_cancelled_at_any_point() -> None:
    pool = PortPool(40000, 40004)
    holding = asyncio.Event()

    async def call(hold: asyncio.Event) -> None:
        with pool.lease():
            holding.set()
            await hold.wait()

    for _ in range(20):
        holding.clear()
        never = asyncio.Event()
        tasks = [asyncio.create_task(call(never)) for _ in range(5)]
        await holding.wait()
        await asyncio.sleep(0)  # let every task reach its lease
        assert pool.in_use == 5
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool.in_use == 0


async def test_endpoints_from_the_pool_give_their_port_back_on_close_and_cancel() -> None:
    # Find a free range by binding ephemeral ports, then build the pool over them.
    probe = [await RtpEndpoint.open("127.0.0.1", 0, FORMATS["slin16"]) for _ in range(3)]
    ports = sorted(p.local_address[1] for p in probe)
    for p in probe:
        p.close()
    pool = PortPool(ports[0], ports[0] + 2)

    eps = []
    for _ in range(3):
        try:
            eps.append(await RtpEndpoint.open_from_pool(pool, "127.0.0.1", FORMATS["slin16"], attempts=3))
        except OSError:
            break  # some port in the range belongs to another process: fine for this test
    assert pool.in_use == len(eps) >= 1
    for ep in eps:
        ep.close()
        ep.close()
    assert pool.in_use == 0

    # Cancelled while binding (port leased, socket not yet made): nothing stays leased.
    task = asyncio.create_task(RtpEndpoint.open_from_pool(pool, "127.0.0.1", FORMATS["slin16"]))
    await asyncio.sleep(0)
    assert pool.in_use == 1 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.in_use == 0

    # A port held by someone else is skipped and not leaked.
    squatter = await RtpEndpoint.open("127.0.0.1", 0, FORMATS["slin16"])
    taken = squatter.local_address[1]
    tiny = PortPool(taken, taken)
    with pytest.raises(OSError):
        await RtpEndpoint.open_from_pool(tiny, "127.0.0.1", FORMATS["slin16"], attempts=1)
    assert tiny.in_use == 0
    squatter.close()
