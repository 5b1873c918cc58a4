"""What must hold in asterisk_conf/ for a real Asterisk to hand every call to pbx-router.

Each check takes the configuration folder and returns a list of problems in words an admin
understands (empty = fine), so the same check runs on our files and on deliberately broken
copies of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from asterisk_config.astconf import (
    ConfError,
    Dialplan,
    Section,
    goto_if_branches,
    jumps,
    of_type,
    one,
    parse_conf,
    parse_dialplan,
    reachable_steps,
    resolve_jump,
    resolved,
    split_args,
)

APP_NAME = "pbx-router"
FALLBACK_CONTEXT = "pbx-router-fallback"
# Where calls enter, and the extensions that must reach pbx-router there.
ENTRY_POINTS = {"from-pstn": ("_X.", "_+X.", "s"), "from-phones": ("100",)}
# Contexts pbx-router continues calls into (extension s unless its rules say otherwise).
DAEMON_TARGETS = (FALLBACK_CONTEXT, "clinic-voicemail", "clinic-after-hours")
# Queue names pbx-router's rules use (examples/clinic.yaml); each needs an Asterisk queue
# ([router-queue]) and a mailbox ([clinic-voicemail]) to overflow to.
QUEUES = ("frontdesk", "nurse", "pharmacy", "billing", "scheduling", "records", "referrals")
AGENTS = ("agent1", "agent2", "agent3")

_PJSIP_RE = re.compile(r"PJSIP/([\w-]+)")


# Every file we ship; each must explain itself to the admin in its header.
CONF_FILES = (
    "asterisk.conf", "modules.conf", "logger.conf", "http.conf", "ari.conf", "manager.conf",
    "pjsip.conf", "rtp.conf", "extensions.conf", "queues.conf", "musiconhold.conf",
    "voicemail.conf",
)


def syntax_problems(conf_dir: Path) -> list[str]:
    """Each file reads as intended and starts with what it is for and what to change."""
    problems: list[str] = []
    for name in CONF_FILES:
        path = conf_dir / name
        if not path.is_file():
            problems.append(f"{name} missing")
            continue
        text = path.read_text(encoding="utf-8")
        # Asterisk opens a block comment at ";--" and ignores everything up to "--;":
        # a ";-----" divider line silently swallows the rest of the file.
        if ";--" in text:
            problems.append(f"{name}: contains ';--', which starts a block comment in Asterisk")
        header = text.split("\n[", 1)[0]
        if "What this file is for" not in header or "What the admin must change" not in header:
            problems.append(f"{name}: header must say what the file is for and what the admin must change")
        try:
            parse_conf(path)
        except ConfError as error:
            problems.append(str(error))
    return problems


def _load(conf_dir: Path, name: str) -> list[Section]:
    return parse_conf(conf_dir / name)


def stasis_problems(conf_dir: Path) -> list[str]:
    plan = parse_dialplan(conf_dir / "extensions.conf")
    problems: list[str] = []
    for step in plan.steps():
        if step.app != "Stasis":
            continue
        args = split_args(step.args)
        where = f"extensions.conf:{step.line}"
        if args[0] != APP_NAME:
            problems.append(f"{where}: Stasis app is {args[0]!r}, pbx-router listens as {APP_NAME!r}")
        if args[1:2] != ["${EXTEN}"]:
            problems.append(f"{where}: Stasis must pass the dialled number: Stasis({APP_NAME},${{EXTEN}})")
        problems.extend(_failed_handling_problems(plan, step.context, step.exten, step.index, where))
    for context, extens in ENTRY_POINTS.items():
        for exten in extens:
            steps = plan.extension(context, exten)
            if steps is None:
                problems.append(f"[{context}] has no extension {exten}: those calls are rejected")
            elif not any(s.app == "Stasis" for s in steps):
                problems.append(f"[{context}] {exten} never reaches Stasis({APP_NAME})")
    return problems


def _failed_handling_problems(
    plan: Dialplan, context: str, exten: str, index: int, where: str
) -> list[str]:
    """After Stasis() returns FAILED (daemon down) the very next step must leave for the fallback."""
    steps = plan.contexts[context][exten]
    if index + 1 >= len(steps) or steps[index + 1].app != "GotoIf":
        return [f"{where}: no GotoIf on STASISSTATUS right after Stasis(): callers of a dead daemon hang"]
    check = steps[index + 1]
    condition, branches = goto_if_branches(check.args)
    if "${STASISSTATUS}" not in condition or '"FAILED"' not in condition or "=" not in condition:
        return [f"extensions.conf:{check.line}: GotoIf does not test ${{STASISSTATUS}} = \"FAILED\""]
    target = resolve_jump(plan, check, branches[0]) if branches else None
    if target is None or target[0] != FALLBACK_CONTEXT:
        return [f"extensions.conf:{check.line}: STASISSTATUS=FAILED does not lead to [{FALLBACK_CONTEXT}]"]
    return []


def fallback_problems(conf_dir: Path) -> list[str]:
    """The fallback rings a human, then takes a message; daemon targets exist and catch bad extensions."""
    plan = parse_dialplan(conf_dir / "extensions.conf")
    problems: list[str] = []
    for context in DAEMON_TARGETS:
        if context not in plan.contexts:
            problems.append(f"context [{context}] missing: pbx-router continues calls into it")
            continue
        for exten in ("s", "i"):
            if exten not in plan.contexts[context]:
                problems.append(f"[{context}] has no '{exten}' extension")
    if problems:
        return problems
    apps = [(s.app, s.args) for s in reachable_steps(plan, FALLBACK_CONTEXT, "s")]
    rings_human = any(
        (app == "Queue" and split_args(args)[0] == "frontdesk")
        or (app == "Dial" and "PJSIP/" in args)
        for app, args in apps
    )
    if not rings_human:
        problems.append(f"[{FALLBACK_CONTEXT}] never rings the front desk (Queue(frontdesk) or Dial)")
    if not any(app == "VoiceMail" for app, _ in apps):
        problems.append(f"[{FALLBACK_CONTEXT}] never ends in VoiceMail: unanswered callers are lost")
    for queue in QUEUES:
        steps = reachable_steps(plan, "router-queue", queue)
        if not any(s.app == "Queue" and split_args(s.args)[0] == queue for s in steps):
            problems.append(f"[router-queue] {queue} does not run Queue({queue})")
        if not any(s.app == "VoiceMail" for s in reachable_steps(plan, "clinic-voicemail", queue)):
            problems.append(f"[clinic-voicemail] {queue} does not take a message")
    return problems


def reference_problems(conf_dir: Path) -> list[str]:
    """Every context, endpoint, queue, mailbox and music class a file names exists."""
    plan = parse_dialplan(conf_dir / "extensions.conf")
    pjsip = _load(conf_dir, "pjsip.conf")
    endpoints = of_type(pjsip, "endpoint")
    queues = {s.name: s for s in resolved(_load(conf_dir, "queues.conf")) if s.name != "general"}
    voicemail = _load(conf_dir, "voicemail.conf")
    mailboxes = {
        f"{key}@{section.name}"
        for section in voicemail
        if section.name not in ("general", "zonemessages")
        for key, _, _ in section.options
    }
    moh_classes = {s.name for s in resolved(_load(conf_dir, "musiconhold.conf"))}
    problems: list[str] = []

    for context, included in plan.includes.items():
        problems += [f"[{context}] includes missing context [{c}]" for c in included if c not in plan.contexts]
    for step in plan.steps():
        where = f"extensions.conf:{step.line}"
        for jump in jumps(step):
            if resolve_jump(plan, step, jump) is None:
                problems.append(f"{where}: {step.app}({step.args}) leads nowhere")
        for endpoint in _PJSIP_RE.findall(step.args) if step.app == "Dial" else []:
            if endpoint not in endpoints:
                problems.append(f"{where}: PJSIP/{endpoint} is not an endpoint in pjsip.conf")
        if step.app == "Queue" and split_args(step.args)[0] not in queues:
            problems.append(f"{where}: queue {split_args(step.args)[0]!r} is not in queues.conf")
        if step.app == "VoiceMail" and split_args(step.args)[0] not in mailboxes:
            problems.append(f"{where}: mailbox {split_args(step.args)[0]!r} is not in voicemail.conf")
    for name, section in endpoints.items():
        entry = section.get("context")
        if entry not in plan.contexts:
            problems.append(f"pjsip.conf [{name}]: context {entry!r} is not in extensions.conf")
    for template in (s for s in pjsip if s.is_template and dict(_pairs(s)).get("type") == "endpoint"):
        entry = dict(_pairs(template)).get("context")
        if entry is not None and entry not in plan.contexts:
            problems.append(f"pjsip.conf [{template.name}](!): context {entry!r} is not in extensions.conf")
    for name, queue in queues.items():
        for member in queue.values("member"):
            for endpoint in _PJSIP_RE.findall(member):
                if endpoint not in endpoints:
                    problems.append(f"queues.conf [{name}]: member PJSIP/{endpoint} is not in pjsip.conf")
        music = queue.get("musicclass")
        if music is not None and music not in moh_classes:
            problems.append(f"queues.conf [{name}]: music class {music!r} not in musiconhold.conf")
    problems += [f"queue {q!r} missing from queues.conf" for q in QUEUES if q not in queues]
    return problems


def _pairs(section: Section) -> list[tuple[str, str]]:
    return [(k, v) for k, v, _ in section.options]


def ari_http_problems(conf_dir: Path) -> list[str]:
    """ARI on 127.0.0.1:8088 only, one plain-password user, no wildcard CORS, AMI off."""
    problems: list[str] = []
    http = one(_load(conf_dir, "http.conf"), "general")
    if http.get("enabled") != "yes":
        problems.append("http.conf: enabled must be yes, ARI rides on this server")
    if http.get("bindaddr") != "127.0.0.1" or http.get("bindport") != "8088":
        problems.append(f"http.conf: must bind 127.0.0.1:8088, not {http.get('bindaddr')}:{http.get('bindport')}")
    if http.get("tlsenable") == "yes":
        problems.append("http.conf: TLS would listen on its own (public) address")
    ari = _load(conf_dir, "ari.conf")
    general = one(ari, "general")
    if general.get("enabled") != "yes":
        problems.append("ari.conf: ARI is disabled")
    origins = [o.strip() for o in (general.get("allowed_origins") or "").split(",") if o.strip()]
    if "*" in origins or any(not re.match(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?$", o) for o in origins):
        problems.append(f"ari.conf: allowed_origins must name local pages only, got {origins}")
    users = of_type(ari, "user")
    user = users.get(APP_NAME)
    if user is None:
        problems.append(f"ari.conf: no [{APP_NAME}] user (type = user)")
    else:
        if user.get("password_format") != "plain":
            problems.append("ari.conf: password_format must be plain (pbx-router sends the password itself)")
        if not user.get("password"):
            problems.append("ari.conf: the pbx-router user has no password")
        if user.get("read_only") == "yes":
            problems.append("ari.conf: a read-only user cannot answer calls")
    manager = one(_load(conf_dir, "manager.conf"), "general")
    if manager.get("enabled") != "no":
        problems.append("manager.conf: AMI must stay disabled")
    return problems


_SOFTPHONE_SETTINGS = {
    "direct_media": "no",
    "rtp_symmetric": "yes",
    "force_rport": "yes",
    "rewrite_contact": "yes",
    "dtmf_mode": "rfc4733",
}


def pjsip_problems(conf_dir: Path) -> list[str]:
    sections = _load(conf_dir, "pjsip.conf")
    problems: list[str] = []
    transports = of_type(sections, "transport")
    udp = [t for t in transports.values() if t.get("protocol") == "udp"]
    if [t.get("bind") for t in udp] != ["0.0.0.0:5060"]:
        problems.append(f"pjsip.conf: need one UDP transport on 0.0.0.0:5060, got {[t.get('bind') for t in udp]}")
    endpoints = of_type(sections, "endpoint")
    auths = of_type(sections, "auth")
    aors = of_type(sections, "aor")
    expected = {"softphone": "from-phones", **{agent: "from-agents" for agent in AGENTS}}
    for name, context in expected.items():
        endpoint = endpoints.get(name)
        if endpoint is None:
            problems.append(f"pjsip.conf: endpoint {name!r} missing")
            continue
        if endpoint.get("context") != context:
            problems.append(f"pjsip.conf [{name}]: context must be {context}, is {endpoint.get('context')}")
        for key, value in _SOFTPHONE_SETTINGS.items():
            if endpoint.get(key) != value:
                problems.append(f"pjsip.conf [{name}]: {key} must be {value}, is {endpoint.get(key)}")
        problems += _codec_problems(name, endpoint)
        auth = auths.get(endpoint.get("auth") or "")
        if auth is None or auth.get("username") != name or not auth.get("password"):
            problems.append(f"pjsip.conf [{name}]: needs auth = <auth section> with username {name} and a password")
        aor = aors.get(endpoint.get("aors") or "")
        if aor is None or not (aor.get("max_contacts") or "0").isdigit() or int(aor.get("max_contacts") or 0) < 1:
            problems.append(f"pjsip.conf [{name}]: needs aors = <aor> with max_contacts >= 1 to register")
    trunk_templates = [
        s for s in sections if s.is_template and dict(_pairs(s)).get("context") == "from-pstn"
    ]
    if not trunk_templates:
        problems.append("pjsip.conf: no trunk template with context = from-pstn")
    return problems


def _codec_problems(name: str, endpoint: Section) -> list[str]:
    allowed: list[str] = []
    for key, value, _ in endpoint.options:
        if key == "disallow" and "all" in value.split(","):
            allowed = []
        elif key == "allow":
            allowed += [codec.strip() for codec in value.split(",")]
    if allowed[:3] != ["ulaw", "alaw", "g722"] or endpoint.values("disallow") != ["all"]:
        return [f"pjsip.conf [{name}]: codecs must be disallow=all then ulaw,alaw,g722, got {allowed}"]
    return []


# Modules without which pbx-router or this dialplan cannot work.
REQUIRED_MODULES = frozenset(
    {
        "res_http_websocket.so", "res_stasis.so", "res_ari.so", "res_ari_channels.so",
        "res_ari_bridges.so", "res_ari_events.so", "res_ari_playbacks.so", "app_stasis.so",
        "chan_rtp.so", "chan_pjsip.so", "res_pjsip.so", "res_rtp_asterisk.so",
        "codec_resample.so", "bridge_holding.so", "app_queue.so", "app_voicemail.so",
        "res_musiconhold.so", "pbx_config.so", "func_talkdetect.so",
    }
)


def module_lists(conf_dir: Path) -> tuple[bool, set[str], set[str]]:
    """(autoload, required modules, modules never to load) from modules.conf."""
    modules = one(_load(conf_dir, "modules.conf"), "modules")
    return (
        modules.get("autoload") == "yes",
        set(modules.values("require")),
        set(modules.values("noload")),
    )


def modules_problems(conf_dir: Path) -> list[str]:
    autoload, required, noload = module_lists(conf_dir)
    problems: list[str] = []
    if not autoload:
        problems.append("modules.conf: autoload must be yes (codecs, formats, timing come that way)")
    problems += [f"modules.conf: {m} must be 'require'd" for m in sorted(REQUIRED_MODULES - required)]
    problems += [f"modules.conf: {m} is both required and noload" for m in sorted(required & noload)]
    if "chan_sip.so" not in noload:
        problems.append("modules.conf: chan_sip.so must be noload, it fights chan_pjsip for port 5060")
    return problems


ALL_CHECKS = (
    syntax_problems,
    stasis_problems,
    fallback_problems,
    reference_problems,
    ari_http_problems,
    pjsip_problems,
    modules_problems,
)


def all_problems(conf_dir: Path) -> list[str]:
    problems: list[str] = []
    for check in ALL_CHECKS:
        try:
            problems += check(conf_dir)
        except ConfError as error:
            problems.append(f"{check.__name__}: {error}")
    return problems
