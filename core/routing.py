"""The single rule every adapter follows: should this message be answered, and in which conversation."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.credentials import UppzyCredentials
from core.models import InboundMessage, MessagePlace
from core.ports import Store
from core.session_ids import conversation_key
from core.uppzy_pool import Connections
from core.workspace import WorkspaceSettings, WorkspaceSettingsService

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    """A message that is a question: its workspace's settings (read once), its conversation key, and the Uppzy
    connection it goes to (`connected` False: the workspace has none, nothing may reach Uppzy)."""

    settings: WorkspaceSettings
    key: str
    creds: UppzyCredentials | None = None
    connected: bool = True


class Router:
    """DMs always; in channels per the channel's mode (`mention`, `all`, `off`); an asker's follow-ups in a thread."""

    def __init__(self, store: Store, workspaces: WorkspaceSettingsService,
                 connections: Connections | None = None) -> None:
        self._store = store
        self._workspaces = workspaces
        self._connections = connections

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
            return Route(ws, conversation_key(t, ws.session_strategy))
        # The workspace's own Uppzy connection wins (its site replaces the site setting); else the deployment key
        # on the workspace's site setting (or UPPZY_SITE_ID); else it is not connected.
        conn = await self._connections.workspace(t.platform, t.workspace_id, ws.site_id)
        if conn is None:
            return Route(ws, conversation_key(t, ws.session_strategy), None, connected=False)
        if conn.creds.site_id != ws.site_id:
            ws = replace(ws, site_id=conn.creds.site_id)
        return Route(ws, conversation_key(t, ws.session_strategy), conn.creds)
