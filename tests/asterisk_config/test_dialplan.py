"""extensions.conf: Asterisk reads it cleanly and every call reaches pbx-router or a human.

asterisklint parses the dialplan the way Asterisk's pbx_config does (applications, argument
counts, Goto destinations). Our own checks (astconf_checks) add what is specific to pbx-router.
Each rule is also run on a deliberately broken copy, so a test here fails when the file breaks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from asterisk_config.astconf import BreakConf
from asterisk_config.astconf_checks import (
    fallback_problems,
    module_lists,
    reference_problems,
    stasis_problems,
)

Check = Callable[[Path], list[str]]

# asterisklint messages we accept in extensions.conf: none today. If a future asterisklint
# version flags something Asterisk itself accepts, add its code here with a comment saying why.
ALLOWED_LINT_CODES: frozenset[str] = frozenset()

_LINT_LINE_RE = re.compile(r"^(?P<where>\S+:\d+) (?P<code>[EWH]_[A-Z0-9_]+): (?P<text>.*)$")
_RUN_ASTERISKLINT = "import os, sys; from asterisklint.main import main; sys.exit(main(sys.argv[1:], os.environ))"


@dataclass(frozen=True)
class LintResult:
    returncode: int
    messages: list[tuple[str, str, str]]  # (file:line, code, text)
    unparsed: list[str]


def asterisklint(command: str, path: Path) -> tuple[int, str, str]:
    """Run ``asterisklint <command> <path>`` in a fresh interpreter.

    A subprocess, because asterisklint keeps its messages in class-level globals.
    """
    env = {k: v for k, v in os.environ.items() if k != "ALINT_IGNORE"}  # nothing silenced
    env["HOME"] = str(path.parent)  # no ~/.asterisklint overrides
    done = subprocess.run(
        [sys.executable, "-c", _RUN_ASTERISKLINT, command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def lint_dialplan(path: Path) -> LintResult:
    returncode, _, stderr = asterisklint("dialplan-check", path)
    messages, unparsed = [], []
    for line in stderr.splitlines():
        match = _LINT_LINE_RE.match(line)
        if match:
            messages.append((match["where"], match["code"], match["text"]))
        elif line.strip():
            unparsed.append(line)
    return LintResult(returncode, messages, unparsed)


def test_asterisklint_finds_nothing_in_extensions_conf(conf_dir: Path) -> None:
    result = lint_dialplan(conf_dir / "extensions.conf")

    assert result.unparsed == []
    assert [m for m in result.messages if m[1] not in ALLOWED_LINT_CODES] == []
    # dialplan-check exits 1 on any message it did not mute, allowed or not.
    assert result.returncode == (1 if result.messages else 0)


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("?pbx-router-fallback,s,1)", "?pbx-router-fallbak,s,1)", "E_DP_GOTO_NOCONTEXT"),
        ("Queue(nurse,", "Queu(nurse,", "E_APP_MISSING"),
    ],
)
def test_asterisklint_reports_a_broken_dialplan(broken_conf: BreakConf, old: str, new: str, code: str) -> None:
    broken = broken_conf("extensions.conf", old, new)

    result = lint_dialplan(broken / "extensions.conf")

    assert result.returncode == 1
    assert code in {m[1] for m in result.messages}


def test_every_application_module_the_dialplan_uses_is_required(conf_dir: Path) -> None:
    returncode, stdout, stderr = asterisklint("modules-show", conf_dir / "extensions.conf")
    used = set(re.findall(r"^load => (\S+\.so)$", stdout, flags=re.MULTILINE))
    _, required, noload = module_lists(conf_dir)

    assert returncode == 0 and stderr == ""
    assert {"app_stasis.so", "app_queue.so", "app_voicemail.so"} <= used
    assert used - required == set()
    assert used & noload == set()


def test_every_inbound_call_goes_to_stasis_pbx_router_with_failed_handling(conf_dir: Path) -> None:
    assert stasis_problems(conf_dir) == []


def test_when_pbx_router_is_down_callers_ring_the_front_desk_then_voicemail(conf_dir: Path) -> None:
    assert fallback_problems(conf_dir) == []


def test_every_context_endpoint_queue_and_mailbox_named_exists(conf_dir: Path) -> None:
    assert reference_problems(conf_dir) == []


_FAILED_CHECK = 'same => n,GotoIf($["${STASISSTATUS}" = "FAILED"]?pbx-router-fallback,s,1)'


@pytest.mark.parametrize(
    ("check", "old", "new", "expected"),
    [
        (stasis_problems, "n,Stasis(pbx-router,", "n,Stasis(pbx_router,", "pbx-router listens as"),
        (stasis_problems, "Stasis(pbx-router,${EXTEN})", "Stasis(pbx-router)", "dialled number"),
        (stasis_problems, _FAILED_CHECK, "same => n,NoOp()", "no GotoIf on STASISSTATUS"),
        (stasis_problems, '"${STASISSTATUS}" = "FAILED"', '"${STASISSTATUS}" = "SUCCESS"', "does not test"),
        (stasis_problems, "FAILED\"]?pbx-router-fallback,s,1", "FAILED\"]?clinic-voicemail,s,1", "does not lead"),
        (stasis_problems, "exten => _+X.,1,", "exten => _+XX.,1,", "no extension _+X."),
        (stasis_problems, "include => clinic-internal", "include => clinic-intern", "no extension 100"),
        (fallback_problems, "exten => i,1,Goto(s,1)\n\n[router-queue]", "\n[router-queue]", "has no 'i'"),
        (fallback_problems, "\n[clinic-after-hours]\n", "\n[clinic-afterhours]\n", "[clinic-after-hours] missing"),
        (fallback_problems, "Queue(frontdesk,,,,${FALLBACK_MAX_WAIT})", "Wait(1)", "never rings"),
        (fallback_problems, "VoiceMail(500@clinic,u)", "Hangup()", "never ends in VoiceMail"),
        (fallback_problems, "Queue(pharmacy,", "Queue(billing,", "does not run Queue(pharmacy)"),
        (fallback_problems, "exten => records,1,VoiceMail(505@clinic,u)", "exten => records,1,Hangup()",
         "[clinic-voicemail] records does not take a message"),
        (reference_problems, "\n[pbx-router-fallback]\n", "\n[pbx-router-fallbak]\n", "leads nowhere"),
        (reference_problems, "Goto(clinic-voicemail,nurse,1)", "Goto(clinic-voicemail,nurses,1)", "leads nowhere"),
        (reference_problems, "GotoIf($[\"${PLAYBACKSTATUS}\" = \"SUCCESS\"]?recorded)",
         "GotoIf($[\"${PLAYBACKSTATUS}\" = \"SUCCESS\"]?recordd)", "leads nowhere"),
        (reference_problems, "Dial(PJSIP/agent3,", "Dial(PJSIP/agent9,", "PJSIP/agent9 is not an endpoint"),
        (reference_problems, "Queue(billing,", "Queue(bills,", "queue 'bills'"),
        (reference_problems, "VoiceMail(503@clinic", "VoiceMail(599@clinic", "mailbox '599@clinic'"),
        (reference_problems, "\n[from-agents]\n", "\n[from-agent]\n", "context 'from-agents' is not in"),
        (reference_problems, "\n[from-pstn]\n", "\n[from-pstn-in]\n", "context 'from-pstn' is not in"),
    ],
)
def test_each_dialplan_rule_catches_its_breakage(
    broken_conf: BreakConf, check: Check, old: str, new: str, expected: str
) -> None:
    broken = broken_conf("extensions.conf", old, new)

    problems = check(broken)

    assert any(expected in p for p in problems), problems
