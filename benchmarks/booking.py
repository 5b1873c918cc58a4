"""Booking benchmark: slot search latency and hold+confirm throughput on the example clinic.

    .venv/bin/python benchmarks/booking.py --quick          # < 2 minutes
    .venv/bin/python benchmarks/booking.py --database-url postgresql://...   # an external server

Runs on the embedded PostgreSQL with its normal (durable) settings unless a URL is given; on a URL
it creates and drops a scratch database. The schedule is pre-filled (about 40% of the next four
weeks booked) so searches skip real busy time. The last line printed is one JSON object with
``hold_confirm_per_s`` and ``slot_search_p99_ms``; the bar is >= 500 and <= 20.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pbx_router.log import configure as configure_logging
from pbx_router.scheduling import PartOfDay, Slot, SlotQuery, SlotUnavailable, Source
from pbx_router.scheduling.data import import_clinic_data, load_clinic_file
from pbx_router.scheduling.service import SchedulingService
from pbx_router.store import Store
from pbx_router.store.testing import temporary_database

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "clinic-data.yaml"


async def prefill(service: SchedulingService, store: Store, patient_ids: list[int], rng: random.Random) -> int:
    """Book ~40% of the next four weeks' checkup slots, straight into the table (fast)."""
    slots = await service.find_slots(SlotQuery("checkup", horizon=dt.timedelta(days=28)), limit=100_000)
    chosen = [s for s in slots if rng.random() < 0.4]
    await store.pool.executemany(
        "INSERT INTO appointments (patient_id, provider_id, location_id, type_id, during, status, source)"
        " VALUES ($1, $2, $3, $4, tstzrange($5, $6, '[)'), 'booked', 'import') ON CONFLICT DO NOTHING",
        [(rng.choice(patient_ids), s.provider_id, s.location_id, s.type_id, s.start, s.end) for s in chosen],
    )
    return len(chosen)


async def bench_search(service: SchedulingService, n: int, rng: random.Random) -> list[float]:
    ref = await service.reference()
    types = [t for t in ref.types.values() if t.phone_bookable]
    today = service.now().astimezone(service.tz).date()
    timings: list[float] = []
    for _ in range(n):
        appointment_type = rng.choice(types)
        provider = rng.choice([None, *appointment_type.provider_ids])
        part = rng.choice([None, None, *PartOfDay])
        days = frozenset({today + dt.timedelta(days=rng.randrange(1, 21))}) if rng.random() < 0.3 else frozenset()
        query = SlotQuery(appointment_type.id, provider, days=days, part_of_day=part)
        started = time.perf_counter()
        await service.find_slots(query, limit=3)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def bench_hold_confirm(
    service: SchedulingService, patient_ids: list[int], n: int, concurrency: int
) -> tuple[int, float]:
    """``n`` hold+confirm pairs on distinct future slots by ``concurrency`` workers."""
    start = service.now() + dt.timedelta(days=35)
    slots = await service.find_slots(
        SlotQuery("follow-up", earliest=start, horizon=dt.timedelta(days=400)), limit=n
    )
    queue: asyncio.Queue[tuple[int, Slot]] = asyncio.Queue()
    for index, slot in enumerate(slots):
        queue.put_nowait((index, slot))
    done = 0
    run_id = uuid.uuid4().hex[:8]

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                index, slot = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                hold = await service.hold(slot, patient_ids[index % len(patient_ids)],
                                          idempotency_key=f"bench-{run_id}-{index}", source=Source.PHONE)
                await service.confirm(hold.id)
                done += 1
            except SlotUnavailable:
                pass

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return done, time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(6)
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        if args.database_url:
            async with temporary_database(args.database_url) as url:
                return await measure(await Store.open(url, Path(tmp), max_size=args.concurrency + 2), args, rng)
        return await measure(await Store.open(None, Path(tmp), max_size=args.concurrency + 2), args, rng)


async def measure(store: Store, args: argparse.Namespace, rng: random.Random) -> dict[str, float]:
    try:
        data = await asyncio.to_thread(load_clinic_file, EXAMPLE)
        await import_clinic_data(store.pool, data)
        service = await SchedulingService.create(store.pool, cache_ttl=3600.0)
        patient_ids = [r["id"] for r in await store.pool.fetch("SELECT id FROM patients")]
        booked = await prefill(service, store, patient_ids, rng)
        print(f"example clinic: {len(data.providers)} providers, {len(data.patients)} patients, "
              f"{booked} prefilled bookings", file=sys.stderr)
        searches = 300 if args.quick else 3000
        pairs = 1500 if args.quick else 10000
        await bench_search(service, 30, rng)  # warm-up: prepared statements, caches
        timings = await bench_search(service, searches, rng)
        p50 = statistics.median(timings)
        p99 = statistics.quantiles(timings, n=100)[98]
        print(f"slot search: {searches} queries, p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(timings):.2f} ms")
        done, elapsed = await bench_hold_confirm(service, patient_ids, pairs, args.concurrency)
        rate = done / elapsed
        print(f"hold+confirm: {done} pairs in {elapsed:.2f} s with {args.concurrency} workers = {rate:.0f}/s")
        return {
            "hold_confirm_per_s": round(rate, 1),
            "slot_search_p99_ms": round(p99, 3),
            "slot_search_p50_ms": round(p50, 3),
            "hold_confirm_pairs": done,
            "concurrency": args.concurrency,
            "embedded": store.embedded is not None,
        }
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (< 2 minutes)")
    parser.add_argument("--database-url", help="an external server (a scratch database is created on it)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    configure_logging("warning")  # one info line per booking would be measured too
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
