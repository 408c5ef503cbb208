"""Conversations as users and admins see them: end one now, list a user's sessions, a workspace's status."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UppzyAuthError, UppzyError, UppzyForbidden, UppzyNotFound, UppzyRejected
from core.models import ReplyTarget
from core.ports import EndResult, Store
from core.reaper import IdleReaper
from core.routing import Router
from core.session_ids import belongs_to_user, user_prefix
from core.uppzy_pool import Connections
from core.uppzy_types import SessionInfo
from core.workspace import WorkspaceSettingsService

__all__ = ["Conversations", "Status"]


@dataclass(frozen=True, slots=True)
class Status:
    """What `/uppzy status` shows an admin."""

    settings: list[tuple[str, str, str]]
    uppzy_ok: bool
    uppzy_detail: str
    pending: int
    open_sessions: int


class Conversations:
    """Ends, lists and reports on conversations; closing goes through the reaper so closes stay paced."""

    def __init__(self, *, store: Store, connections: Connections, workspaces: WorkspaceSettingsService,
                 reaper: IdleReaper, router: Router) -> None:
        self._router = router  # the conversation key a message is recorded under
        self._store = store
        self._connections = connections
        self._workspaces = workspaces
        self._reaper = reaper

    async def end(self, target: ReplyTarget) -> EndResult:
        """Close the caller's session for this conversation now (the next message starts a fresh one)."""
        row = await self._store.live_session(await self._router.key(target))
        if row is None:
            return EndResult.NO_SESSION
        return EndResult.ENDED if await self._reaper.close_now(row, "user") else EndResult.BUSY

    async def list(self, platform: str, workspace_id: str, email: str | None,
                   user_id: str | None = None) -> list[SessionInfo]:
        """Uppzy's session list for a workspace's site: one user's by email, else the user's sessions that this
        workspace opened (the site may be shared with DMs and other workspaces, whose sessions stay out)."""
        ws = await self._workspaces.get(platform, workspace_id)
        uppzy = await self._connections.workspace(platform, workspace_id, ws.site_id)
        if uppzy is None:
            return []  # not connected: no session of it can exist at Uppzy
        sessions = await uppzy.list_sessions(email=email, site_id=uppzy.creds.site_id)
        if email or user_id is None:
            return sessions
        # Exact ids, not a prefix test: with per-user sessions a numeric channel id could pass for a generation.
        ours = await self._store.session_ids(platform, workspace_id, user_prefix(platform, user_id))
        return [s for s in sessions if s.id in ours and belongs_to_user(s.id, platform, user_id)]

    async def status(self, platform: str, workspace_id: str) -> Status:
        """Settings, Uppzy connectivity and counts for one workspace."""
        described = await self._workspaces.describe(platform, workspace_id)
        ws = await self._workspaces.get(platform, workspace_id)
        uppzy = await self._connections.workspace(platform, workspace_id, ws.site_id)
        site = uppzy.creds.site_id if uppzy is not None else ws.site_id
        try:
            if uppzy is None:
                raise _NotConnected
            await uppzy.site(site)
            ok, detail = True, "reachable"
        except UppzyAuthError:
            ok, detail = False, "the API key was refused (401)"
        except UppzyForbidden:
            ok, detail = False, "the plan does not allow API access (403)"
        except _NotConnected:
            ok, detail = False, "not connected to Uppzy yet (no key for this workspace)"
        except UppzyNotFound:
            ok, detail = False, f"site {site!r} not found (404)"
        except UppzyRejected as exc:
            ok, detail = False, f"refused ({exc.status})"
        except UppzyError as exc:
            ok, detail = False, f"unreachable ({type(exc).__name__})"
        counts = await self._store.counts(platform, workspace_id)
        return Status(described, ok, detail, counts.pending, counts.open_sessions)


class _NotConnected(Exception):
    """The workspace has no Uppzy connection (its own or the deployment's)."""
