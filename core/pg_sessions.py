"""The PostgreSQL store's sessions, workspace settings, channel modes and the lookups the router needs; a change
other replicas cache is announced on the settings channel in the same statement (core.ports.Store documents each
method's contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.models import SessionRow
from core.pg_schema import SETTINGS_NOTIFY
from core.turn_rows import TURN_COLUMNS
from core.turn_rows import turn_from_row as _turn

__all__ = ["PostgresSessions"]

_T_COLUMNS = ", ".join("t." + c.strip() for c in TURN_COLUMNS.split(","))  # a session's last question, joined
_NOTIFY = SETTINGS_NOTIFY


class PostgresSessions:
    """Mixin of PostgresStore: each method one statement through the store's pool."""

    if TYPE_CHECKING:  # provided by PostgresStore
        async def _exec(self, sql: str, *args: Any) -> int: ...

        async def _row(self, sql: str, *args: Any) -> Any: ...

        async def _rows(self, sql: str, *args: Any) -> list[Any]: ...

    # ---- sessions ----------------------------------------------------------------------------------------

    async def _sessions(self, where: str, *args: Any) -> list[SessionRow]:
        rows = await self._rows(
            "SELECT s.id, s.key, s.platform, s.workspace_id, s.site_id, s.state, s.last_activity, s.idle_timeout, "
            f"{_T_COLUMNS} FROM sessions s LEFT JOIN turns t ON t.id = s.last_turn_id WHERE {where}", *args,
        )
        return [SessionRow(*r[:8], _turn(r[8:]).target if r[8] is not None else None) for r in rows]

    async def live_session(self, key: str) -> SessionRow | None:
        """The open session of a key."""
        rows = await self._sessions("s.key=$1 AND s.state='open'", key)
        return rows[0] if rows else None

    async def idle_sessions(self, now: float, limit: int) -> list[SessionRow]:
        """Open sessions idle at `now`, stalest first."""
        return await self._sessions("s.state='open' AND s.last_activity + s.idle_timeout < $1 "
                                    "ORDER BY s.last_activity + s.idle_timeout LIMIT $2", now, limit)

    async def claim_for_close(self, session_id: str, *, idle_at: float | None, now: float | None = None) -> bool:
        """open → closing (at `now`) if idle at `idle_at` and without an unfinished question: compare-and-set."""
        return await self._exec(
            "UPDATE sessions SET state='closing', closing_at=$3 WHERE id=$1 AND state='open' AND ($2::float8 IS NULL "
            "OR last_activity + idle_timeout < $2) AND NOT EXISTS (SELECT 1 FROM turns t WHERE "
            "t.session_id=sessions.id AND t.state NOT IN ('answered','failed'))", session_id, idle_at, now,
        ) == 1

    async def closing_sessions(self, limit: int = 500, *, before: float | None = None) -> list[SessionRow]:
        """Sessions whose close was claimed (before `before`) but not confirmed."""
        return await self._sessions("s.state='closing' AND ($2::float8 IS NULL OR s.closing_at IS NULL OR "
                                    "s.closing_at < $2) ORDER BY s.last_activity LIMIT $1", limit, before)

    async def mark_closed(self, session_id: str, reason: str, *, now: float) -> None:
        """→ closed; the first reason and time stay."""
        await self._exec("UPDATE sessions SET state='closed', closed_at=COALESCE(closed_at, $1), "
                         "close_reason=COALESCE(close_reason, $2) WHERE id=$3", now, reason, session_id)

    async def set_idle_timeout(self, platform: str, workspace_id: str, seconds: float) -> None:
        """Open sessions of a workspace follow its new idle timeout; other replicas hear of it."""
        await self._exec(f"WITH u AS (UPDATE sessions SET idle_timeout=$3 WHERE platform=$1 AND workspace_id=$2 AND "
                         f"state='open') {_NOTIFY}", platform, workspace_id, seconds)

    # ---- settings ----------------------------------------------------------------------------------------

    async def workspace_settings(self, platform: str, workspace_id: str) -> dict[str, str]:
        """The raw overrides of a workspace."""
        rows = await self._rows("SELECT key, value FROM workspace_settings WHERE platform=$1 AND workspace_id=$2",
                                platform, workspace_id)
        return {r[0]: r[1] for r in rows}

    async def put_workspace_setting(self, platform: str, workspace_id: str, key: str, value: str | None, *,
                                    by: str | None, now: float) -> None:
        """Store or remove one override and notify the other replicas, in one statement."""
        if value is None:
            await self._exec(f"WITH d AS (DELETE FROM workspace_settings WHERE platform=$1 AND workspace_id=$2 AND "
                             f"key=$3) {_NOTIFY}", platform, workspace_id, key)
            return
        await self._exec(
            "WITH w AS (INSERT INTO workspace_settings (platform, workspace_id, key, value, updated_by, updated_at) "
            "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (platform, workspace_id, key) DO UPDATE SET value=excluded.value, "
            f"updated_by=excluded.updated_by, updated_at=excluded.updated_at) {_NOTIFY}",
            platform, workspace_id, key, value, by, now,
        )

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str | None:
        """The reply mode stored for one channel."""
        row = await self._row("SELECT mode FROM channel_modes WHERE platform=$1 AND workspace_id=$2 AND "
                              "channel_id=$3", platform, workspace_id, channel_id)
        return row[0] if row else None

    async def put_channel_mode(self, platform: str, workspace_id: str, channel_id: str, mode: str, *,
                               by: str | None, now: float) -> None:
        """Store one channel's reply mode and notify the other replicas, in one statement."""
        await self._exec(
            "WITH w AS (INSERT INTO channel_modes (platform, workspace_id, channel_id, mode, updated_by, updated_at) "
            "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (platform, workspace_id, channel_id) DO UPDATE SET "
            f"mode=excluded.mode, updated_by=excluded.updated_by, updated_at=excluded.updated_at) {_NOTIFY}",
            platform, workspace_id, channel_id, mode, by, now,
        )
