"""``pbx-router migrate``: apply pending database migrations and exit.

Uses ``--database-url`` (default ``$PBX_ROUTER_DATABASE_URL``) or, when neither is given, the
embedded server in ``<data-dir>/postgres`` (attaching to it if the daemon is already running it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pbx_router.store import Store, StoreError

DATABASE_URL_ENV = "PBX_ROUTER_DATABASE_URL"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply pending database migrations (idempotent) and exit.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV) or None,
        help=f"PostgreSQL DSN (default ${DATABASE_URL_ENV}; unset: the embedded server)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./var"),
        help="data directory holding the embedded server (default ./var)",
    )
    parser.set_defaults(func=run)


async def _migrate(database_url: str | None, data_dir: Path) -> list[str]:
    # Open without migrating, then migrate explicitly: that is how we learn what this run applied.
    store = await Store.open(database_url, data_dir, min_size=1, max_size=1, migrate=False)
    try:
        return await store.migrate()
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    try:
        applied = asyncio.run(_migrate(args.database_url, args.data_dir))
    except StoreError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pbx-router migrate: {first_line}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pbx-router migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("database schema is up to date")
    return 0
