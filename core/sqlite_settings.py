"""The SQLite store's workspace settings, channel modes and the thread and session lookups the router needs
(core.ports.Store documents each method's contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

__all__ = ["SqliteSettings"]


class SqliteSettings:
    """Mixin of SqliteStore: every query one hop to the connection's thread."""

    if TYPE_CHECKING:  # provided by SqliteStore
        async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

        async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def workspace_settings(self, platform: str, workspace_id: str) -> dict[str, str]:
        """The raw overrides an admin stored for a workspace."""
        rows = await self._all("SELECT key, value FROM workspace_settings WHERE platform=? AND workspace_id=?",
                               (platform, workspace_id))
        return {k: v for k, v in rows}

    async def put_workspace_setting(self, platform: str, workspace_id: str, key: str, value: str | None, *,
                                    by: str | None, now: float) -> None:
        """Store (or with None, remove) one override."""
        if value is None:
            await self._exec("DELETE FROM workspace_settings WHERE platform=? AND workspace_id=? AND key=?",
                                   (platform, workspace_id, key))
            return
        await self._exec(
            "INSERT INTO workspace_settings (platform, workspace_id, key, value, updated_by, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (platform, workspace_id, key) DO UPDATE SET value=excluded.value, "
            "updated_by=excluded.updated_by, updated_at=excluded.updated_at",
            (platform, workspace_id, key, value, by, now),
        )

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str | None:
        """The reply mode an admin set for one channel, if any."""
        row = await self._one("SELECT mode FROM channel_modes WHERE platform=? AND workspace_id=? AND channel_id=?",
                              (platform, workspace_id, channel_id))
        return row[0] if row else None

    async def put_channel_mode(self, platform: str, workspace_id: str, channel_id: str, mode: str, *,
                               by: str | None, now: float) -> None:
        """Set one channel's reply mode."""
        await self._exec(
            "INSERT INTO channel_modes (platform, workspace_id, channel_id, mode, updated_by, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (platform, workspace_id, channel_id) DO UPDATE SET "
            "mode=excluded.mode, updated_by=excluded.updated_by, updated_at=excluded.updated_at",
            (platform, workspace_id, channel_id, mode, by, now),
        )

    async def knows_thread(self, platform: str, channel_id: str, thread_root: str) -> bool:
        """True when the bot has answered (or is answering) in this thread: follow-ups need no mention."""
        row = await self._one(
            "SELECT 1 FROM turns WHERE platform=? AND channel_id=? AND (thread_id=? OR message_id=?) LIMIT 1",
            (platform, channel_id, thread_root, thread_root),
        )
        return row is not None

    async def asked_in_thread(self, platform: str, channel_id: str, thread_root: str, user_id: str) -> bool:
        """True when this user asked in (or started) this thread: their follow-ups need no mention."""
        row = await self._one(
            "SELECT 1 FROM turns WHERE platform=? AND channel_id=? AND (thread_id=? OR message_id=?) AND user_id=? "
            "LIMIT 1", (platform, channel_id, thread_root, thread_root, user_id),
        )
        return row is not None

    async def session_ids(self, platform: str, workspace_id: str, prefix: str) -> set[str]:
        """Ids (keys starting with `prefix`) of the sessions this workspace opened."""
        rows = await self._all(
            "SELECT id FROM sessions WHERE platform=? AND workspace_id=? AND substr(key, 1, ?)=?",
            (platform, workspace_id, len(prefix), prefix),
        )
        return {row[0] for row in rows}
