"""The SQLite store's sessions: the open session of a conversation key, idle and closing ones, and their closes
(core.ports.Store documents each method's contract)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from core.models import SessionRow
from core.turn_rows import TURN_COLUMNS
from core.turn_rows import turn_from_row as _turn

__all__ = ["SqliteSessions"]


class SqliteSessions:
    """Mixin of SqliteStore: every query one hop to the connection's thread."""

    if TYPE_CHECKING:  # provided by SqliteStore
        async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def _session_rows(self, where: str, params: Iterable[Any]) -> list[SessionRow]:
        columns = ", ".join("t." + c.strip() for c in TURN_COLUMNS.split(","))
        rows = await self._all(
            "SELECT s.id, s.key, s.platform, s.workspace_id, s.site_id, s.state, s.last_activity, s.idle_timeout, "
            f"{columns} FROM sessions s LEFT JOIN turns t ON t.id = s.last_turn_id WHERE {where}", params,
        )
        return [SessionRow(*r[:8], _turn(r[8:]).target if r[8] is not None else None) for r in rows]

    async def live_session(self, key: str) -> SessionRow | None:
        """The open session of a conversation key, if any."""
        rows = await self._session_rows("s.key=? AND s.state='open'", (key,))
        return rows[0] if rows else None

    async def idle_sessions(self, now: float, limit: int) -> list[SessionRow]:
        """Open sessions whose idle timeout has passed at `now`, stalest first (an index on last activity)."""
        return await self._session_rows(
            "s.state='open' AND s.last_activity + s.idle_timeout < ? ORDER BY s.last_activity + s.idle_timeout "
            "LIMIT ?", (now, limit),
        )

    async def claim_for_close(self, session_id: str, *, idle_at: float | None, now: float | None = None) -> bool:
        """Atomically mark a session 'closing' (at `now`) if it is open, idle at `idle_at` (None: any) and not busy."""
        changed = await self._exec(
            "UPDATE sessions SET state='closing', closing_at=? WHERE id=? AND state='open' "
            "AND (? IS NULL OR last_activity + idle_timeout < ?) "
            "AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id=sessions.id "
            "AND t.state NOT IN ('answered','failed'))",
            (now, session_id, idle_at, idle_at),
        )
        return changed == 1

    async def set_idle_timeout(self, platform: str, workspace_id: str, seconds: float) -> None:
        """A workspace changed its idle timeout: open sessions follow it from now on."""
        await self._exec(
            "UPDATE sessions SET idle_timeout=? WHERE platform=? AND workspace_id=? AND state='open'",
            (seconds, platform, workspace_id),
        )

    async def closing_sessions(self, limit: int = 500, *, before: float | None = None) -> list[SessionRow]:
        """Sessions whose close was started (before `before`) but not confirmed: resumed after a crash or a failed
        call."""
        return await self._session_rows(
            "s.state='closing' AND (? IS NULL OR s.closing_at IS NULL OR s.closing_at < ?) ORDER BY s.last_activity "
            "LIMIT ?", (before, before, limit))

    async def mark_closed(self, session_id: str, reason: str, *, now: float) -> None:
        """Uppzy confirmed the close."""
        await self._exec(
            "UPDATE sessions SET state='closed', closed_at=COALESCE(closed_at, ?), "
            "close_reason=COALESCE(close_reason, ?) WHERE id=?", (now, reason, session_id),
        )
