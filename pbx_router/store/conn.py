"""The connection our queries run on: a dedicated one (``asyncpg.connect``) or one borrowed from
the pool (``pool.acquire()`` hands out a proxy, which asyncpg's types keep distinct)."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
