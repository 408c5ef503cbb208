"""The SQLite store's part for many workspaces: Slack installations, OAuth states and per-workspace Uppzy
credentials, every secret sealed before it gets here (core.ports.Store documents each method's contract)."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

__all__ = ["NO_ID", "SEALED_COLUMNS", "SqliteSecrets", "installation_key", "reseal_columns"]

NO_ID = ""  # how "no enterprise" / an org-wide install's "no team" is stored (key columns cannot be NULL)
# Every sealed column: (table, its two key columns, the sealed column); secrets rotation walks each one.
SEALED_COLUMNS: tuple[tuple[str, tuple[str, str], str], ...] = (
    ("installations", ("enterprise_id", "team_id"), "sealed"),
    ("workspace_credentials", ("platform", "workspace_id"), "sealed_key"),
)


Keys = tuple[str, str]
# (table, key columns, sealed column, after this key or None, page size) -> [(key 1, key 2, sealed value)]
Page = Callable[[str, Keys, str, Keys | None, int], Awaitable[Sequence[Sequence[str]]]]
# (table, key columns, sealed column, [(new, key 1, key 2, old)]) -> rows rewritten (compare-and-set on old)
Swap = Callable[[str, Keys, str, list[tuple[str, str, str, str]]], Awaitable[int]]


async def reseal_columns(page: Page, swap: Swap, reseal: Callable[[str], str | None], batch: int) -> int:
    """The rotation walk both stores share: every sealed column, `batch` rows at a time in key order, the values
    `reseal` changes written back by `swap` only where they are still the value read; returns rows rewritten."""
    rewritten = 0
    for table, keys, column in SEALED_COLUMNS:
        after: Keys | None = None
        while True:
            rows = await page(table, keys, column, after, batch)
            changes = [(new, a, b, old) for a, b, old in rows if (new := reseal(old)) is not None]
            if changes:
                rewritten += await swap(table, keys, column, changes)
            if len(rows) < batch:
                break
            after = (rows[-1][0], rows[-1][1])
    return rewritten


def installation_key(enterprise_id: str | None, team_id: str | None) -> tuple[str, str]:
    """The stored key of an installation (None becomes NO_ID)."""
    return enterprise_id or NO_ID, team_id or NO_ID


def _find(c: sqlite3.Connection, enterprise_id: str | None, team_id: str | None) -> tuple[str, str, str] | None:
    """(enterprise, team, sealed) of the exact row, else of the enterprise's org-wide install."""
    key = installation_key(enterprise_id, team_id)
    sql = "SELECT enterprise_id, team_id, sealed FROM installations WHERE enterprise_id=? AND team_id=?"
    row = c.execute(sql, key).fetchone()
    if row is None and enterprise_id:
        row = c.execute(sql, (key[0], NO_ID)).fetchone()
    return tuple(row) if row else None  # type: ignore[return-value]


def _consume(c: sqlite3.Connection, state: str, now: float) -> bool:
    row = c.execute("DELETE FROM oauth_states WHERE state=? RETURNING expires_at", (state,)).fetchall()
    c.execute("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))  # every expired one goes with it
    return bool(row) and row[0][0] > now


def _forget(c: sqlite3.Connection, platform: str, workspace_id: str) -> None:
    for table in ("workspace_credentials", "workspace_settings", "channel_modes"):
        c.execute(f"DELETE FROM {table} WHERE platform=? AND workspace_id=?", (platform, workspace_id))


def _compare_and_set(c: sqlite3.Connection, table: str, keys: tuple[str, str], column: str,
                     changes: Sequence[tuple[str, str, str, str]]) -> int:
    sql = f"UPDATE {table} SET {column}=? WHERE {keys[0]}=? AND {keys[1]}=? AND {column}=?"
    return sum(c.execute(sql, change).rowcount for change in changes)


class SqliteSecrets:
    """Mixin of SqliteStore (one process): a row's refresh is serialised by an asyncio lock per row."""

    if TYPE_CHECKING:  # provided by SqliteStore
        _db: Any

        async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
        async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        async def _tx(self, work: Callable[[sqlite3.Connection], Any]) -> Any: ...

    def _row_lock(self, key: tuple[str, ...]) -> asyncio.Lock:
        locks: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Lock] | None = vars(self).get("_row_locks")
        if locks is None:
            locks = self._row_locks = weakref.WeakValueDictionary()  # type: ignore[misc]
        lock = locks.get(key)
        if lock is None:
            lock = locks[key] = asyncio.Lock()
        return lock

    # ---- installations --------------------------------------------------------------------------------

    async def save_installation(self, enterprise_id: str | None, team_id: str | None, sealed: str, *,
                                now: float) -> None:
        """Insert or replace the installation of (enterprise, team)."""
        await self._exec(
            "INSERT INTO installations (enterprise_id, team_id, sealed, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT (enterprise_id, team_id) DO UPDATE SET sealed=excluded.sealed, updated_at=excluded.updated_at",
            (*installation_key(enterprise_id, team_id), sealed, now),
        )

    async def find_installation(self, enterprise_id: str | None, team_id: str | None) -> str | None:
        """The exact row, else the enterprise's org-wide install."""
        row = await self._db.run(_find, enterprise_id, team_id)
        return row[2] if row else None

    async def delete_installation(self, enterprise_id: str | None, team_id: str | None) -> bool:
        """Remove exactly that row."""
        return await self._exec("DELETE FROM installations WHERE enterprise_id=? AND team_id=?",
                                installation_key(enterprise_id, team_id)) == 1

    async def refresh_installation(self, enterprise_id: str | None, team_id: str | None,
                                   refresh: Callable[[str], Awaitable[str | None]]) -> str | None:
        """`refresh(current)` under this row's lock; its result saved unless the row changed meanwhile."""
        found = await self._db.run(_find, enterprise_id, team_id)
        if found is None:
            return None
        key = (found[0], found[1])
        async with self._row_lock(("installations", *key)):
            row = await self._one("SELECT sealed FROM installations WHERE enterprise_id=? AND team_id=?", key)
            if row is None:
                return None
            current: str = row[0]
            fresh = await refresh(current)
            if fresh is None:
                return current
            if await self._exec("UPDATE installations SET sealed=? WHERE enterprise_id=? AND team_id=? AND sealed=?",
                                (fresh, *key, current)) == 1:
                return fresh
            row = await self._one("SELECT sealed FROM installations WHERE enterprise_id=? AND team_id=?", key)
            return row[0] if row else None  # saved anew (or removed) meanwhile: that stands

    # ---- OAuth states ---------------------------------------------------------------------------------

    async def issue_oauth_state(self, state: str, *, expires_at: float) -> None:
        """Remember a state handed to Slack's authorize URL until `expires_at` (a state already there keeps its own)."""
        await self._exec("INSERT INTO oauth_states (state, expires_at) VALUES (?,?) ON CONFLICT (state) DO NOTHING",
                         (state, expires_at))

    async def consume_oauth_state(self, state: str, *, now: float) -> bool:
        """Delete the state; True when it was there and unexpired."""
        return await self._tx(lambda c: _consume(c, state, now))  # type: ignore[no-any-return]

    # ---- per-workspace Uppzy credentials --------------------------------------------------------------

    async def set_credentials(self, platform: str, workspace_id: str, *, site_id: str, sealed_key: str,
                              now: float) -> None:
        """Insert or replace a workspace's Uppzy site and sealed key."""
        await self._exec(
            "INSERT INTO workspace_credentials (platform, workspace_id, site_id, sealed_key, updated_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT (platform, workspace_id) DO UPDATE SET site_id=excluded.site_id, "
            "sealed_key=excluded.sealed_key, updated_at=excluded.updated_at",
            (platform, workspace_id, site_id, sealed_key, now),
        )

    async def get_credentials(self, platform: str, workspace_id: str) -> tuple[str, str] | None:
        """(site_id, sealed_key) of a workspace, if it has its own."""
        row = await self._one("SELECT site_id, sealed_key FROM workspace_credentials WHERE platform=? AND "
                              "workspace_id=?", (platform, workspace_id))
        return (row[0], row[1]) if row else None

    async def forget_workspace(self, platform: str, workspace_id: str) -> None:
        """Credentials, settings and channel modes of a workspace, gone in one transaction."""
        await self._tx(lambda c: _forget(c, platform, workspace_id))

    async def workspace_connections(self, *, after: tuple[str, str] | None = None,
                                    limit: int = 500) -> list[tuple[str, str, str, str]]:
        """One page of (platform, workspace_id, site_id, sealed_key) in key order."""
        where = "WHERE (platform, workspace_id) > (?, ?) " if after else ""
        rows = await self._all(f"SELECT platform, workspace_id, site_id, sealed_key FROM workspace_credentials {where}"
                               "ORDER BY platform, workspace_id LIMIT ?", (*(after or ()), limit))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ---- rotation -------------------------------------------------------------------------------------

    async def reseal_secrets(self, reseal: Callable[[str], str | None], *, batch: int = 200) -> int:
        """Every sealed column, `batch` rows at a time in key order, each batch one compare-and-set transaction."""
        return await reseal_columns(self._sealed_page, self._swap_sealed, reseal, batch)

    async def _sealed_page(self, table: str, keys: Keys, column: str, after: Keys | None,
                           limit: int) -> list[Any]:
        where = f"WHERE ({keys[0]}, {keys[1]}) > (?, ?) " if after else ""
        return await self._all(f"SELECT {keys[0]}, {keys[1]}, {column} FROM {table} {where}"
                               f"ORDER BY {keys[0]}, {keys[1]} LIMIT ?", (*(after or ()), limit))

    async def _swap_sealed(self, table: str, keys: Keys, column: str,
                           changes: list[tuple[str, str, str, str]]) -> int:
        return await self._tx(lambda c: _compare_and_set(c, table, keys, column, changes))  # type: ignore[no-any-return]
