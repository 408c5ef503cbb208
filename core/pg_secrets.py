"""The PostgreSQL store's part for many workspaces: Slack installations, OAuth states and per-workspace Uppzy
credentials, every secret sealed before it gets here (core.ports.Store documents each method's contract)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from core.pg_schema import SETTINGS_NOTIFY
from core.sqlite_secrets import NO_ID, Keys, installation_key, reseal_columns

__all__ = ["PostgresSecrets"]

_ROW = "SELECT enterprise_id, team_id, sealed FROM installations WHERE enterprise_id=$1 AND team_id=$2"


class _RefreshFailed(Exception):
    """The caller's refresh raised: the transaction rolls back and its exception is raised as it was."""

    def __init__(self, error: Exception) -> None:
        super().__init__("refresh failed")
        self.error = error


async def _find(conn: asyncpg.Connection, enterprise_id: str | None, team_id: str | None, lock: str = "") -> Any:
    key = installation_key(enterprise_id, team_id)
    row = await conn.fetchrow(_ROW + lock, *key)
    if row is None and enterprise_id:
        row = await conn.fetchrow(_ROW + lock, key[0], NO_ID)
    return row


class PostgresSecrets:
    """Mixin of PostgresStore (replicas): a row's refresh holds SELECT … FOR UPDATE across the caller's await."""

    if TYPE_CHECKING:  # provided by PostgresStore
        _pool: asyncpg.Pool

        async def _exec(self, sql: str, *args: Any) -> int: ...
        async def _row(self, sql: str, *args: Any) -> Any: ...
        async def _rows(self, sql: str, *args: Any) -> list[Any]: ...
        async def _write_row(self, sql: str, *args: Any) -> Any: ...
        async def _tx(self, work: Callable[[asyncpg.Connection], Any]) -> Any: ...

    # ---- installations --------------------------------------------------------------------------------

    async def save_installation(self, enterprise_id: str | None, team_id: str | None, sealed: str, *,
                                now: float) -> None:
        """Insert or replace the installation of (enterprise, team)."""
        await self._exec(
            "INSERT INTO installations (enterprise_id, team_id, sealed, updated_at) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT (enterprise_id, team_id) DO UPDATE SET sealed=excluded.sealed, updated_at=excluded.updated_at",
            *installation_key(enterprise_id, team_id), sealed, now,
        )

    async def find_installation(self, enterprise_id: str | None, team_id: str | None) -> str | None:
        """The exact row, else the enterprise's org-wide install (one round trip)."""
        e, t = installation_key(enterprise_id, team_id)
        row = await self._row(
            "SELECT sealed FROM installations WHERE enterprise_id=$1 AND (team_id=$2 OR ($1 <> '' AND team_id='')) "
            "ORDER BY team_id = $2 DESC LIMIT 1", e, t,
        )
        return row[0] if row else None

    async def delete_installation(self, enterprise_id: str | None, team_id: str | None) -> bool:
        """Remove exactly that row."""
        return await self._exec("DELETE FROM installations WHERE enterprise_id=$1 AND team_id=$2",
                                *installation_key(enterprise_id, team_id)) == 1

    async def refresh_installation(self, enterprise_id: str | None, team_id: str | None,
                                   refresh: Callable[[str], Awaitable[str | None]]) -> str | None:
        """`refresh(current)` in a transaction holding the row FOR UPDATE: no other replica refreshes it meanwhile."""

        async def work(conn: asyncpg.Connection) -> str | None:
            row = await _find(conn, enterprise_id, team_id, " FOR UPDATE")
            if row is None:
                return None
            try:
                fresh = await refresh(row["sealed"])
            except Exception as exc:
                raise _RefreshFailed(exc) from None
            if fresh is None:
                return row["sealed"]  # type: ignore[no-any-return]
            await conn.execute("UPDATE installations SET sealed=$3 WHERE enterprise_id=$1 AND team_id=$2",
                               row["enterprise_id"], row["team_id"], fresh)
            return fresh

        try:
            return await self._tx(work)  # type: ignore[no-any-return]
        except _RefreshFailed as failed:
            raise failed.error from None

    # ---- OAuth states ---------------------------------------------------------------------------------

    async def issue_oauth_state(self, state: str, *, expires_at: float) -> None:
        """Remember a state handed to Slack's authorize URL until `expires_at` (a state already there keeps its own)."""
        await self._exec("INSERT INTO oauth_states (state, expires_at) VALUES ($1, $2) ON CONFLICT (state) DO NOTHING",
                         state, expires_at)

    async def consume_oauth_state(self, state: str, *, now: float) -> bool:
        """Delete the state (and every expired one) in one statement; True when it was there and unexpired."""
        row = await self._write_row(
            "WITH mine AS (DELETE FROM oauth_states WHERE state=$1 RETURNING expires_at), "
            "old AS (DELETE FROM oauth_states WHERE expires_at <= $2 AND state <> $1) "
            "SELECT COALESCE((SELECT expires_at > $2 FROM mine), false)", state, now,
        )
        return bool(row[0])

    # ---- per-workspace Uppzy credentials --------------------------------------------------------------

    async def set_credentials(self, platform: str, workspace_id: str, *, site_id: str, sealed_key: str,
                              now: float) -> None:
        """Insert or replace a workspace's Uppzy site and sealed key; other replicas drop their cached connection of
        it (NOTIFY), as for settings."""
        await self._exec(
            "WITH w AS (INSERT INTO workspace_credentials (platform, workspace_id, site_id, sealed_key, updated_at) "
            "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (platform, workspace_id) DO UPDATE SET site_id=excluded.site_id, "
            f"sealed_key=excluded.sealed_key, updated_at=excluded.updated_at) {SETTINGS_NOTIFY}",
            platform, workspace_id, site_id, sealed_key, now,
        )

    async def get_credentials(self, platform: str, workspace_id: str) -> tuple[str, str] | None:
        """(site_id, sealed_key) of a workspace, if it has its own."""
        row = await self._row("SELECT site_id, sealed_key FROM workspace_credentials WHERE platform=$1 AND "
                              "workspace_id=$2", platform, workspace_id)
        return (row[0], row[1]) if row else None

    async def forget_workspace(self, platform: str, workspace_id: str) -> None:
        """Credentials, settings and channel modes of a workspace, gone in one statement; other replicas drop their
        cached settings of it (NOTIFY)."""
        await self._exec(
            "WITH c AS (DELETE FROM workspace_credentials WHERE platform=$1 AND workspace_id=$2), "
            "s AS (DELETE FROM workspace_settings WHERE platform=$1 AND workspace_id=$2), "
            f"m AS (DELETE FROM channel_modes WHERE platform=$1 AND workspace_id=$2) {SETTINGS_NOTIFY}",
            platform, workspace_id,
        )

    async def workspace_connections(self, *, after: tuple[str, str] | None = None,
                                    limit: int = 500) -> list[tuple[str, str, str, str]]:
        """One page of (platform, workspace_id, site_id, sealed_key) in key order (byte order, as SQLite's)."""
        order = 'ORDER BY platform COLLATE "C", workspace_id COLLATE "C" LIMIT $1'
        if after is None:
            rows = await self._rows(f"SELECT platform, workspace_id, site_id, sealed_key FROM workspace_credentials "
                                    f"{order}", limit)
        else:
            rows = await self._rows('SELECT platform, workspace_id, site_id, sealed_key FROM workspace_credentials '
                                    'WHERE (platform COLLATE "C", workspace_id COLLATE "C") > ($2, $3) ' + order,
                                    limit, *after)
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ---- rotation -------------------------------------------------------------------------------------

    async def reseal_secrets(self, reseal: Callable[[str], str | None], *, batch: int = 200) -> int:
        """Every sealed column, `batch` rows at a time in key order, each batch one compare-and-set statement."""
        return await reseal_columns(self._sealed_page, self._swap_sealed, reseal, batch)

    async def _sealed_page(self, table: str, keys: Keys, column: str, after: Keys | None,
                           limit: int) -> list[Any]:
        k1, k2 = keys
        if after is None:
            return await self._rows(f"SELECT {k1}, {k2}, {column} FROM {table} ORDER BY {k1}, {k2} LIMIT $1", limit)
        return await self._rows(f"SELECT {k1}, {k2}, {column} FROM {table} WHERE ({k1}, {k2}) > ($2, $3) "
                                f"ORDER BY {k1}, {k2} LIMIT $1", limit, *after)

    async def _swap_sealed(self, table: str, keys: Keys, column: str,
                           changes: list[tuple[str, str, str, str]]) -> int:
        k1, k2 = keys
        new, first, second, old = (list(values) for values in zip(*changes, strict=True))
        return await self._exec(
            f"UPDATE {table} t SET {column}=v.new FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) "
            f"AS v(new, a, b, old) WHERE t.{k1}=v.a AND t.{k2}=v.b AND t.{column}=v.old", new, first, second, old)
