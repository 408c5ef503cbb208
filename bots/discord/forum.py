"""Discord forums as a help desk: the per-server `answered_tag`/`escalated_tag` put on a forum post."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import discord
from cachetools import LRUCache

from core.models import ReplyTarget

__all__ = ["MAX_APPLIED_TAGS", "ForumTags"]

log = logging.getLogger(__name__)

MAX_APPLIED_TAGS = 5  # Discord: a forum post carries at most 5 tags
FORUM_TYPES = (15, 16)  # GUILD_FORUM, GUILD_MEDIA

Which = Literal["answered", "escalated"]
SettingsOf = Callable[[str, str], Awaitable[Any]]


class ForumTags:
    """Adds a named tag to a forum post, keeping the tags already there and Discord's limit of five."""

    def __init__(self, settings_of: SettingsOf | None) -> None:
        self._settings_of = settings_of  # Inbound.settings: the server's answered_tag / escalated_tag
        # (post, tag name) this process has seen on the post: a follow-up's answer makes no REST call for it.
        self._tagged: LRUCache[tuple[int, str], None] = LRUCache(maxsize=10_000)

    async def mark(self, client: discord.Client, target: ReplyTarget, which: Which, thread_id: int) -> None:
        """Apply the server's tag for `which` to the post `thread_id`; cosmetic, so it never raises."""
        if self._settings_of is None or target.is_dm:
            return
        try:
            cached = client.get_channel(thread_id)
            if isinstance(cached, discord.Thread) and cached.parent is not None and \
                    not isinstance(cached.parent, discord.ForumChannel):
                return  # an ordinary thread: no tags, no settings read, no REST call
            ws = await self._settings_of(target.platform, target.workspace_id)
            name = getattr(ws, f"{which}_tag", None)
            if name and (thread_id, name.casefold()) not in self._tagged:
                other = getattr(ws, "answered_tag", None) if which == "escalated" else None
                if await self._add(client, thread_id, name, other):
                    self._tagged[(thread_id, name.casefold())] = None
        except discord.HTTPException as exc:
            log.warning("could not tag forum post=%s as %s (%s %s): does the bot have Manage Threads?",
                        thread_id, which, exc.status, exc.code)
        except Exception as exc:
            log.warning("tagging forum post=%s as %s failed: %s", thread_id, which, type(exc).__name__)

    async def _add(self, client: discord.Client, thread_id: int, name: str, replaceable: str | None) -> bool:
        """Read the post and its forum fresh (the cache may be behind), then PATCH the applied tags; True when the
        post carries the tag afterwards."""
        thread = await client.http.get_channel(thread_id)
        parent_id = thread.get("parent_id")
        if parent_id is None or "thread_metadata" not in thread:
            return False
        tags = await self._available(client, int(parent_id))
        if tags is None:
            return False
        tag = tags.get(name.casefold())
        if tag is None:
            log.info("forum=%s has no tag named %r: post=%s left untagged", parent_id, name[:20], thread_id)
            return False
        applied = [int(t) for t in thread.get("applied_tags") or []]
        if tag in applied:
            return True
        if len(applied) >= MAX_APPLIED_TAGS:
            old = tags.get(replaceable.casefold()) if replaceable else None
            if old is None or old not in applied:
                log.info("forum post=%s already has %d tags: %r not added", thread_id, len(applied), name[:20])
                return False
            applied.remove(old)  # escalated supersedes answered when the post is full
        await client.http.edit_channel(thread_id, applied_tags=[str(t) for t in [*applied, tag]])
        log.info("forum post=%s tagged %r", thread_id, name[:20])
        return True

    @staticmethod
    async def _available(client: discord.Client, forum_id: int) -> dict[str, int] | None:
        """The forum's tags by case-folded name; None when the parent is not a forum."""
        forum = client.get_channel(forum_id)
        if isinstance(forum, discord.ForumChannel):
            return {tag.name.casefold(): tag.id for tag in forum.available_tags}
        data = await client.http.get_channel(forum_id)
        if data.get("type") not in FORUM_TYPES:
            return None
        return {str(t["name"]).casefold(): int(t["id"]) for t in data.get("available_tags") or []}
