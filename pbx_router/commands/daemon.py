"""``pbx-router run`` and ``pbx-router check-config``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from pbx_router.config import ConfigError, load_config

EXIT_BAD_CONFIG = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the daemon against Asterisk (production)")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="pbx-router.yaml")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a daemon config file (exit 0 valid, 1 not)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    if cfg.rules:
        from pbx_router.rules import RulesError, load_rules

        try:
            load_rules(cfg.rules)
        except RulesError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            print(f"{len(exc.errors)} error(s) in the rules file {cfg.rules}", file=sys.stderr)
            return 1
    print(f"{args.file}: OK (ARI {cfg.ari.url} app {cfg.ari.app}; database "
          f"{'embedded in ' + cfg.data_dir if not cfg.database.url else 'external'}; "
          f"rules {cfg.rules or 'none: every call takes calls.default_route'})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print("pbx-router: configuration is not valid, not starting:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    if cfg.rules:
        from pbx_router.rules import RulesError, load_rules

        try:
            load_rules(cfg.rules)
        except RulesError as exc:
            print("pbx-router: routing rules are not valid, not starting:", file=sys.stderr)
            for line in exc.errors:
                print(f"  {line}", file=sys.stderr)
            return EXIT_BAD_CONFIG

    from pbx_router import log
    from pbx_router.app import App

    log.configure(cfg.log.level, json={"auto": None, "json": True, "console": False}[cfg.log.format])
    # Whatever the daemon writes (spool, data directory, caches) holds or sits next to health
    # information: nobody but its own user reads it. The spool and data directory also set their
    # modes explicitly, for App used in-process (tests, the demo).
    os.umask(0o077)
    try:
        asyncio.run(App(cfg).run())
    except KeyboardInterrupt:
        pass
    return 0
