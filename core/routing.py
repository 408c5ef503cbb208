"""The single rule every adapter follows: should this message be answered, and in which conversation."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.credentials import UppzyCredentials
from core.models import InboundMessage, MessagePlace, ReplyTarget
from core.ports import Store
from core.session_ids import conversation_key
from core.uppzy_pool import Connections
from core.workspace import WorkspaceSettings, WorkspaceSettingsService

__all__ = ["Route", "Router", "conversation_scope"]


def conversation_scope(target: ReplyTarget, creds: UppzyCredentials | None,
                       separate: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """What keeps conversations of different tenants apart: the workspace, where user and channel ids alone may meet
    another workspace's (a platform in `separate`: Slack with "Add to Slack", where Slack Connect channels and
    Enterprise Grid users span workspaces; or any workspace on its own Uppzy connection), and that connection's
    site (a site change starts a new session, on the new site, instead of sending the old session's id there).
    Empty for the single-workspace deployment, whose session ids stay `<platform>-user-<user>-<channel>`."""
    own = creds is not None and creds.own
    parts: list[str] = []
    if own or target.platform in separate:
        parts.append(target.workspace_id)
    if own and creds is not None:
        parts.append(creds.site_id)
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Route:
    """A message that is a question: its workspace's settings (read once), its conversation key, and the Uppzy
    connection it goes to (`connected` False: the workspace has none, nothing may reach Uppzy)."""

    settings: WorkspaceSettings
    key: str
    connected: bool = True


class Router:
    """DMs always; in channels per the channel's mode (`mention`, `all`, `off`); an asker's follow-ups in a thread."""

    def __init__(self, store: Store, workspaces: WorkspaceSettingsService,
                 connections: Connections | None = None, *, separate: frozenset[str] = frozenset()) -> None:
        self._store = store
        self._workspaces = workspaces
        self._connections = connections
        self._separate = separate  # platforms whose workspaces are separate tenants (see conversation_scope)

    async def route(self, msg: InboundMessage) -> Route | str:
        """The route of a question, or why the message is not one (a short reason for logs and tests).

        - a direct message is always a question;
        - a channel switched `off` answers nothing, not even mentions;
        - a mention of the bot is a question, and so is a new forum post;
        - a reply in a thread without a mention is a question only from someone who asked the bot in that
          thread (their follow-up); anyone else mentions the bot, so a thread the bot answered in once is not
          taken over for everybody's chatter;
        - a top-level channel message is a question when the channel is `all`.
        """
        t = msg.target
        if msg.place is not MessagePlace.DIRECT:
            mode = await self._workspaces.channel_mode(t.platform, t.workspace_id, t.channel_id)
            if mode == "off":
                return "channel is off"
            if not (msg.mentioned or msg.place is MessagePlace.FORUM_POST):
                if msg.place is MessagePlace.THREAD:
                    if not await self._store.asked_in_thread(t.platform, t.channel_id, t.thread_root, t.user_id):
                        return "not an asker in this thread"
                elif mode != "all":
                    return "not mentioned"
        ws = await self._workspaces.get(t.platform, t.workspace_id)
        if self._connections is None:
            return Route(ws, self._key(t, ws, None))
        # The workspace's own Uppzy connection wins (its site replaces the site setting); else the deployment key
        # on the workspace's site setting (or UPPZY_SITE_ID); else it is not connected.
        conn = await self._connections.workspace(t.platform, t.workspace_id, ws.site_id)
        if conn is None:
            return Route(ws, self._key(t, ws, None), connected=False)
        if conn.creds.site_id != ws.site_id:
            ws = replace(ws, site_id=conn.creds.site_id)
        return Route(ws, self._key(t, ws, conn.creds))

    async def key(self, target: ReplyTarget) -> str:
        """The conversation key a question from `target` would be recorded under now (`/uppzy end` closes it)."""
        ws = await self._workspaces.get(target.platform, target.workspace_id)
        conn = None if self._connections is None else \
            await self._connections.workspace(target.platform, target.workspace_id, ws.site_id)
        return self._key(target, ws, conn.creds if conn is not None else None)

    def _key(self, target: ReplyTarget, ws: WorkspaceSettings, creds: UppzyCredentials | None) -> str:
        return conversation_key(target, ws.session_strategy, conversation_scope(target, creds, self._separate))
