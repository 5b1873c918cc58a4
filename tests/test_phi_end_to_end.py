"""No phone number, date of birth or transcript reaches the logs above DEBUG, end to end.

A real process configures logging exactly as ``pbx-router run`` does with ``log: {level: info,
format: json}`` (``pbx_router.log.configure``), runs the whole ``pbx-router demo`` (emulated
Asterisk, embedded PostgreSQL, real recogniser, keypad DOB entry, spoken requests), then forces
the failures that used to leak: a traceback at ERROR whose message holds a number, a date of
birth and a transcript; an asyncio callback that crashes (logged by asyncio through the stdlib
with its traceback); a plain ``logging.getLogger("asyncio").error`` line with a number; and a
worker thread dying of an exception. Everything the process wrote to stderr is then searched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NUMBER = "+16175550143"  # E.164
NUMBER_US = "(617) 555-0143"  # the same number as a person writes it
DOB = "07/19/1958"
SAID = "my husband collapsed on the kitchen floor"

DRIVER = textwrap.dedent(
    """
    import argparse, asyncio, logging, sys, threading
    from pbx_router import log
    from pbx_router.commands import demo

    number, number_us, dob, said = sys.argv[1:5]
    log.configure("info", json=True)  # what `pbx-router run` does for log: {level: info, format: json}
    code = asyncio.run(demo._demo(argparse.Namespace(keep=None, verbose=True)))
    print(f"demo exit {code}", flush=True)

    def explode(who):
        raise ValueError(f"cannot reach {who} born {dob}, who said: {said}")

    async def failures():
        lg = log.get_logger("pbx_router.calls.supervisor")
        try:
            raise RuntimeError(f"could not route caller {number} (dob {dob}) who said {said!r}")
        except RuntimeError:
            lg.exception("call_flow_failed", call_id="forced-traceback")
        logging.getLogger("asyncio").error("Unclosed connection for caller %s", number_us)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_soon(explode, number)   # asyncio logs "Exception in callback explode('+1...')"
        loop.call_soon(done.set)
        await done.wait()

    asyncio.run(failures())
    worker = threading.Thread(target=explode, args=(number,), name="worker")
    worker.start()
    worker.join()
    print("forced failures logged", flush=True)
    """
)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_a_full_demo_and_forced_tracebacks_log_no_number_dob_or_transcript(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(driver), NUMBER, NUMBER_US, DOB, SAID],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"driver failed:\n{out[-3000:]}\n{err[-3000:]}"
    assert "demo exit 0" in out and "forced failures logged" in out

    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == len(err.splitlines()), f"non-JSON output on stderr:\n{err[:3000]}"
    events = {line["event"] for line in lines}
    # The demo really ran through the daemon, and the forced failures really were logged.
    assert {"call_started", "call_decided", "booking_done", "call_ended"} <= events
    forced = [line for line in lines if line.get("call_id") == "forced-traceback"]
    assert forced and "RuntimeError" in forced[0]["exception"]
    stdlib = [line for line in lines if line.get("logger") == "asyncio"]
    assert len(stdlib) == 2 and any("ValueError" in line.get("exception", "") for line in stdlib)
    assert any(line["event"] == "thread_uncaught_exception" and "ValueError" in line["exception"] for line in lines)

    # What the demo's callers said, as its report printed it (stdout is the demo's own output).
    heard = [h for h in re.findall(r"heard: '([^']+)'", out) if len(h) > 8]
    assert len(heard) >= 3, out
    # The demo's callers (+1555010000N), the booking patient's number and her keypad DOB.
    numbers = [*re.findall(r"\[(\+1\d{10}),", out), NUMBER]
    assert len(numbers) >= 8, out
    # Searched without timestamps and ids, whose digits could spell anything.
    text = "\n".join(json.dumps({k: v for k, v in line.items() if k != "timestamp" and not k.endswith("_id")})
                     for line in lines)
    for n in numbers:
        d = _digits(n)[-10:]
        shapes = rf"{d[:3]}\D{{0,2}}{d[3:6]}\D{{0,2}}{d[6:]}|(?<!\d){d[3:6]}\D?{d[6:]}(?!\d)"
        assert not re.search(shapes, text), (n, re.search(shapes, text))
    for dob in (DOB, "1958-07-19", "07191958", "02032004", "02/03/2004", "2004-02-03"):
        assert dob not in text, dob
    for said in [*heard, SAID, "collapsed"]:
        assert said.lower() not in err.lower(), said
