"""Hot reload: valid files swap in atomically, invalid ones are rejected with the old rules
kept, calls keep the rules they started with, and the watcher notices edits."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from pbx_router.rules import CallFacts, RulesError, RulesHolder, decide
from pbx_router.rules.watch import watch_rules

from .conftest import OPEN

RULES = """\
settings:
  emergency: {{target: oncall}}
intents:
  refill: {{keywords: [refill]}}
targets:
  oncall: {{endpoint: PJSIP/agent3}}
  pharmacy: {{queue: pharmacy}}
  desk: {{queue: frontdesk}}
rules:
  - name: refill
    when: {{intent: refill}}
    then: {{target: {refill_target}}}
  - name: fallback
    then: {{target: desk}}
"""


def write(path: Path, refill_target: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(RULES.format(refill_target=refill_target), encoding="utf-8")
    tmp.replace(path)  # atomic, as an editor or config tool would save


def test_reload_swaps_valid_and_rejects_invalid(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "pharmacy")
    holder = RulesHolder(path)
    first = holder.current
    started_with = first  # a call in progress holds this reference
    write(path, "desk")
    status = holder.reload()
    assert status.ok and status.version != first.version and holder.current is not first
    refill = holder.current.matcher.match("refill please")
    assert (
        decide(holder.current, CallFacts(match=refill, now=OPEN)).target.name == "desk"
    )  # type: ignore[union-attr]
    assert (
        decide(started_with, CallFacts(match=refill, now=OPEN)).target.name
        == "pharmacy"
    )  # type: ignore[union-attr]

    in_force = holder.current
    write(path, "nowhere")  # typo in a target name
    bad = holder.reload()
    assert not bad.ok and bad.version == in_force.version and holder.current is in_force
    assert any(
        "undefined target 'nowhere'" in e and e.startswith(f"{path}:")
        for e in bad.errors
    )
    assert holder.status is bad


def test_invalid_file_at_start_up_raises(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "nowhere")
    with pytest.raises(RulesError):
        RulesHolder(path)


def test_reload_under_concurrent_calls(tmp_path: Path) -> None:
    """Calls decide in threads while reloads swap between two versions (and a broken one):
    every decision is consistent with exactly the rules that call started with."""
    path = tmp_path / "rules.yaml"
    write(path, "pharmacy")
    holder = RulesHolder(path)
    expected = {holder.current.version: "pharmacy"}
    stop = threading.Event()
    problems: list[str] = []
    decided = [0]

    def caller() -> None:
        while not stop.is_set():
            rs = holder.current  # taken once at call start
            d = decide(rs, CallFacts(match=rs.matcher.match("refill please"), now=OPEN))
            want = expected.get(rs.version)
            if d.rules_version != rs.version or (
                want is not None and d.target is not None and d.target.name != want
            ):
                problems.append(f"{rs.version}: {d.target}")
            decided[0] += 1

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            target = ("desk", "pharmacy", "nowhere")[i % 3]
            write(path, target)
            status = holder.reload()
            if target != "nowhere":
                assert status.ok
                expected[status.version] = target
            else:
                assert not status.ok
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not problems
    assert decided[0] > 30


async def test_watcher_reloads_on_change_and_reports_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "pharmacy")
    holder = RulesHolder(path)
    first = holder.current.version
    task = asyncio.create_task(watch_rules(holder, path, interval=0.02))
    try:
        write(path, "desk")
        await _eventually(lambda: holder.current.version != first, "reload after edit")
        second = holder.current.version
        write(path, "nowhere")
        await _eventually(lambda: not holder.status.ok, "rejected reload")
        assert holder.current.version == second
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _eventually(predicate: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
