"""``pbx-router override ...``, ``pbx-router agent ...``, ``pbx-router callbacks ...`` and
``pbx-router status``: staff tools that talk to a running daemon's admin API.

Where the API is: ``--url`` (default http://127.0.0.1:8089) and ``--token`` (default
$PBX_ROUTER_ADMIN_TOKEN), or ``-c pbx-router.yaml`` to take both from the daemon's own config.
Exit status 0 on success, 1 with a one-line message otherwise (argparse usage errors: 2).
Times are typed and shown in this machine's local time zone unless an offset is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pbx_router.admin.client import (
    DEFAULT_URL,
    AdminClient,
    AdminClientError,
    quote_endpoint,
)
from pbx_router.config import ENV_ADMIN_TOKEN, ConfigError, load_config
from pbx_router.queues.model import PRESENCES
from pbx_router.queues.overrides import OVERRIDE_KINDS

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_MIN_ID_PREFIX = 4
Command = Callable[[AdminClient, argparse.Namespace], int]


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the daemon is")
    where.add_argument("--url", default=None, help=f"admin API URL (default {DEFAULT_URL}, or from -c)")
    where.add_argument("--token", default=None, help=f"admin API token (default ${ENV_ADMIN_TOKEN}, or from -c)")
    where.add_argument("-c", "--config", default=None, metavar="FILE",
                       help="read the admin API address and token from the daemon's pbx-router.yaml")
    where.add_argument("--json", action="store_true", help="print the API's JSON answer")

    override = subparsers.add_parser(
        "override", help="staff overrides: close/open/redirect queues, after-hours now",
        description="Create, list and cancel staff overrides on a running daemon.",
    )
    osub = override.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = osub.add_parser("add", parents=[common], help="make an override (it needs an expiry)",
                          description="Examples: --kind close_queue --scope frontdesk --ttl 2h; "
                                      "--kind after_hours --until 2026-03-02T08:00; "
                                      "--kind redirect_intent --scope prescription_refill --target nurse_line")
    add.add_argument("--kind", required=True, choices=OVERRIDE_KINDS)
    add.add_argument("--scope", default=None,
                     help="queue, intent, agent endpoint, or 'all' (after_hours: always 'all')")
    add.add_argument("--target", default=None, help="where calls go (redirects; optional for close_queue)")
    add.add_argument("--reason", required=True, help="why (kept in the record)")
    add.add_argument("--author", required=True, help="who is making it (kept in the record)")
    expiry = add.add_mutually_exclusive_group(required=True)
    expiry.add_argument("--ttl", type=duration, metavar="DURATION", help="how long, e.g. 90m, 2h, 1d, 1h30m")
    expiry.add_argument("--until", type=instant, metavar="ISO", help="until when, e.g. 2026-03-02T08:00")
    add.set_defaults(func=_entry(_override_add))

    listing = osub.add_parser("list", parents=[common], help="overrides in force now")
    listing.set_defaults(func=_entry(_override_list))

    cancel = osub.add_parser("cancel", parents=[common], help="end an override now")
    cancel.add_argument("id", help="override id (or a unique prefix of it, as listed)")
    cancel.add_argument("--reason", required=True, help="why (kept in the record)")
    cancel.add_argument("--author", default=None, help="who (default: your login name)")
    cancel.set_defaults(func=_entry(_override_cancel))

    agent = subparsers.add_parser("agent", help="agents: list them, set presence",
                                  description="Agent presence on a running daemon.")
    asub = agent.add_subparsers(dest="action", metavar="ACTION", required=True)
    presence = asub.add_parser("presence", parents=[common], help="log an agent in or out, or pause them")
    presence.add_argument("endpoint", help="e.g. PJSIP/agent1")
    presence.add_argument("presence", choices=PRESENCES)
    presence.add_argument("--reason", default=None, help="why (kept in the record)")
    presence.add_argument("--author", default=None, help="who (default: your login name)")
    pexpiry = presence.add_mutually_exclusive_group()
    pexpiry.add_argument("--ttl", type=duration, metavar="DURATION", help="how long (default 12h)")
    pexpiry.add_argument("--until", type=instant, metavar="ISO", help="until when")
    presence.set_defaults(func=_entry(_agent_presence))
    alist = asub.add_parser("list", parents=[common], help="agents, their presence and status")
    alist.set_defaults(func=_entry(_agent_list))

    status = subparsers.add_parser("status", parents=[common], help="is the daemon up and ready?",
                                   description="Readiness, Asterisk link, calls, rules and queues of a running daemon.")
    status.set_defaults(func=_entry(_status))

    callbacks = subparsers.add_parser(
        "callbacks", parents=[common], help="callers waiting for a call back: list, claim, done",
        description="Callback requests callers left (newest first), for staff: list them, claim one "
                    "(\"I am calling them back\"), mark it done. Without an action: list.")
    callbacks.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    callbacks.add_argument("--all", action="store_true", help="also those already done")
    callbacks.set_defaults(func=_entry(_callbacks))
    csub = callbacks.add_subparsers(dest="action", metavar="ACTION", required=False)
    clist = csub.add_parser("list", parents=[common], help="requests not done yet (--all: every one)")
    clist.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    clist.add_argument("--all", action="store_true", help="also those already done")
    clist.set_defaults(func=_entry(_callbacks))
    claim = csub.add_parser("claim", parents=[common], help="say you are calling this caller back")
    claim.add_argument("id", type=int, help="callback id, as listed")
    claim.add_argument("--author", default=None, help="who (default: your login name)")
    claim.set_defaults(func=_entry(_callback_claim))
    done = csub.add_parser("done", parents=[common], help="the caller was called back")
    done.add_argument("id", type=int, help="callback id, as listed")
    done.add_argument("--author", default=None, help="who (default: your login name)")
    done.add_argument("--note", default=None, help="what came of it (kept in the record)")
    done.set_defaults(func=_entry(_callback_done))


# -- argument types ---------------------------------------------------------------------------


def duration(text: str) -> dt.timedelta:
    """``90m``, ``2h``, ``1d``, ``1h30m``, ``45s``."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90m, 2h, 1d, 1h30m)")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    value = dt.timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if value <= dt.timedelta(0):
        raise argparse.ArgumentTypeError("the duration must be longer than zero")
    return value


def instant(text: str) -> dt.datetime:
    """ISO 8601; without an offset it is this machine's local time."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time (e.g. 2026-03-02T08:00)") from None
    return value if value.tzinfo is not None else value.astimezone()


# -- plumbing ---------------------------------------------------------------------------------


def _entry(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(_client(args), args)
        except ConfigError as exc:
            more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
            print(f"pbx-router: configuration is not valid: {exc.errors[0]}{more}", file=sys.stderr)
            return 1
        except AdminClientError as exc:
            print(f"pbx-router: {exc}", file=sys.stderr)
            return 1

    return run


def _client(args: argparse.Namespace) -> AdminClient:
    url, token = args.url, args.token
    if args.config:
        # applies $PBX_ROUTER_ADMIN_TOKEN over the file, as the daemon does; the ARI password may
        # live only in the daemon's environment, so it is not asked for here
        cfg = load_config(args.config, check_secrets=False)
        host = cfg.admin.host
        if host in ("", "0.0.0.0", "::"):  # a wildcard bind is reached via loopback
            host = "127.0.0.1"
        url = url or (f"http://[{host}]:{cfg.admin.port}" if ":" in host else f"http://{host}:{cfg.admin.port}")
        token = token or cfg.admin.token
    return AdminClient(url or DEFAULT_URL, token or os.environ.get(ENV_ADMIN_TOKEN) or None)


def _author(args: argparse.Namespace) -> str:
    if args.author:
        return str(args.author)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers): say so rather than invent one
        raise AdminClientError("cannot tell who you are: give --author") from None


def _expiry(args: argparse.Namespace) -> dict[str, Any]:
    if args.ttl is not None:
        return {"ttl_minutes": args.ttl.total_seconds() / 60}
    if args.until is not None:
        return {"expires_at": args.until.isoformat()}
    return {}


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except ValueError:
        return iso


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------------------


def _override_add(client: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"kind": args.kind, "author": args.author, "reason": args.reason, **_expiry(args)}
    if args.scope is not None:
        body["scope"] = args.scope
    if args.target is not None:
        body["target"] = args.target
    created = client.post("/api/overrides", body)
    if args.json:
        _print_json(created)
    else:
        target = f" -> {created['target']}" if created.get("target") else ""
        print(f"override {created['id']}: {created['kind']} {created['scope']}{target} "
              f"until {_when(created['expires_at'])}")
    return 0


def _override_list(client: AdminClient, args: argparse.Namespace) -> int:
    overrides = client.get("/api/overrides")["overrides"]
    if args.json:
        _print_json(overrides)
    elif not overrides:
        print("no overrides in force")
    else:
        _table([(o["id"], o["kind"], o["scope"], o.get("target") or "-", _when(o["expires_at"]), o["author"],
                 o["reason"]) for o in overrides],
               ("ID", "KIND", "SCOPE", "TARGET", "UNTIL", "AUTHOR", "REASON"))
    return 0


def _override_cancel(client: AdminClient, args: argparse.Namespace) -> int:
    override_id = _resolve_id(client, args.id.strip())
    answer = client.delete(f"/api/overrides/{override_id}", {"author": _author(args), "reason": args.reason})
    if args.json:
        _print_json(answer)
    else:
        print(f"override {override_id} cancelled")
    return 0


def _resolve_id(client: AdminClient, given: str) -> str:
    """A full id passes through; a short prefix must name exactly one override in force."""
    if len(given.replace("-", "")) >= 32:
        return given
    if len(given) < _MIN_ID_PREFIX:
        raise AdminClientError(f"give at least {_MIN_ID_PREFIX} characters of the override id")
    matches = [o["id"] for o in client.get("/api/overrides")["overrides"] if o["id"].startswith(given)]
    if not matches:
        raise AdminClientError(f"no override in force has an id starting with {given!r}")
    if len(matches) > 1:
        raise AdminClientError(f"{given!r} matches {len(matches)} overrides; give more of the id")
    return str(matches[0])


def _agent_presence(client: AdminClient, args: argparse.Namespace) -> int:
    body = {
        "presence": args.presence, "author": _author(args),
        "reason": args.reason or "set with pbx-router agent presence", **_expiry(args),
    }
    agent = client.put(f"/api/agents/{quote_endpoint(args.endpoint)}/presence", body)
    if args.json:
        _print_json(agent)
    else:
        print(f"{agent.get('endpoint', args.endpoint)}: {agent.get('presence', args.presence)}"
              f" ({agent.get('status', '?')})")
    return 0


def _agent_list(client: AdminClient, args: argparse.Namespace) -> int:
    agents = client.get("/api/agents")["agents"]
    if args.json:
        _print_json(agents)
    elif not agents:
        print("no agents configured")
    else:
        _table([(a["endpoint"], a.get("name") or "-",
                 a["presence"] + (" (override)" if a.get("presence_override") else ""),
                 a.get("status", "-"), ",".join(a.get("queues", [])) or "-") for a in agents],
               ("ENDPOINT", "NAME", "PRESENCE", "STATUS", "QUEUES"))
    return 0


def _callbacks(client: AdminClient, args: argparse.Namespace) -> int:
    status = "all" if args.all else "open"
    rows = client.get(f"/api/callbacks?limit={max(1, min(args.limit, 1000))}&status={status}")["callbacks"]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no callback requests" if args.all else "no callback requests waiting")
        return 0
    _table([(str(r.get("id", "-")), _when(r.get("at")), _callback_number(r), r.get("name") or "-",
             r.get("queue") or "-", r.get("intent") or "-", _callback_state(r)) for r in rows],
           ("ID", "WHEN", "NUMBER", "NAME", "TEAM", "ABOUT", "STATUS"))
    return 0


def _callback_number(row: dict[str, Any]) -> str:
    # A withheld number is said so: a blank or "-" reads like a number we failed to keep.
    return "withheld" if row.get("withheld") else str(row.get("number") or "-")


def _callback_state(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "open")
    if status == "claimed":
        return f"claimed by {row.get('claimed_by')}"
    if status == "done":
        return f"done by {row.get('done_by')} {_when(row.get('done_at'))}"
    return status


def _callback_claim(client: AdminClient, args: argparse.Namespace) -> int:
    row = client.post(f"/api/callbacks/{args.id}/claim", {"author": _author(args)})
    if args.json:
        _print_json(row)
    else:
        print(f"callback {row['id']}: claimed by {row['claimed_by']}; call {_callback_number(row)}"
              + (f" ({row['name']})" if row.get("name") else ""))
    return 0


def _callback_done(client: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"author": _author(args)}
    if args.note:
        body["note"] = args.note
    row = client.post(f"/api/callbacks/{args.id}/done", body)
    if args.json:
        _print_json(row)
    else:
        print(f"callback {row['id']}: done by {row['done_by']}")
    return 0


def _status(client: AdminClient, args: argparse.Namespace) -> int:
    status = client.get("/api/status")
    queues = client.get("/api/queues")["queues"]
    ready = bool(status.get("ready"))
    if args.json:
        _print_json({"status": status, "queues": queues})
        return 0 if ready else 1
    print(f"ready:        {'yes' if ready else 'NO'}")
    ari = status.get("ari") or {}
    role = f" ({ari['role']})" if ari.get("role") not in (None, "active") else ""  # e.g. standby
    print(f"asterisk:     {'connected' if ari.get('connected') else 'NOT connected'}{role}")
    print(f"active calls: {status.get('active_calls', '?')}")
    rules = status.get("rules") or {}
    if rules:
        state = "ok" if rules.get("ok") else f"LAST RELOAD REJECTED ({len(rules.get('errors', []))} errors)"
        print(f"rules:        version {rules.get('version') or '?'}, {state}")
        for line in rules.get("restart_required") or ():  # a reload the running daemon cannot apply
            print(f"RESTART REQUIRED: {line}")
    if "overrides_active" in status:
        print(f"overrides:    {status['overrides_active']} in force")
    if queues:
        _table([(q["queue"], q.get("state", "-"), str(q.get("waiting", 0)), f"{q.get('longest_wait_s', 0)}s",
                 str(q.get("agents", {}).get("available", 0)), str(q.get("agents", {}).get("busy", 0)),
                 str(q.get("agents", {}).get("paused", 0)), str(q.get("answered", 0)), str(q.get("abandoned", 0)),
                 str(q.get("overflowed", 0))) for q in queues],
               ("QUEUE", "STATE", "WAITING", "LONGEST", "AVAIL", "BUSY", "PAUSED", "ANSWERED", "ABANDONED",
                "OVERFLOWED"))
    return 0 if ready else 1  # scripts can ask "is it ready?" by exit status
