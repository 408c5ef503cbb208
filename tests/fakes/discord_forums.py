"""FakeDiscord's forum tags: a forum's available tags and the tags applied to its posts (threads).

Discord's rules kept here: a post carries at most 5 tags, each one of its forum's available tags; only the
post's creator or a member with MANAGE_THREADS changes them, and a moderated tag needs MANAGE_THREADS.
"""

from __future__ import annotations

from typing import Any

MAX_APPLIED_TAGS = 5


class TagError(Exception):
    """Raised as an HTTP error by the fake's edit-channel route (status, message, code)."""

    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class DiscordForums:
    """Mixin for FakeDiscord: `set_forum_tags`, `applied_tag_names` and the applied_tags edit of a thread."""

    _channels: dict[int, dict[str, Any]]
    bot_id: int
    bot_manages_threads: bool

    def new_id(self) -> int:  # provided by FakeDiscord
        raise NotImplementedError

    def set_forum_tags(self, forum_id: int, names: list[str], *, moderated: tuple[str, ...] = ()) -> dict[str, int]:
        """Give a forum these available tags (before connecting, or dispatch CHANNEL_UPDATE); returns name -> id."""
        forum = self._channels[forum_id]
        tags = [{"id": str(self.new_id()), "name": name, "moderated": name in moderated, "emoji_id": None,
                 "emoji_name": None} for name in names]
        forum["available_tags"] = tags
        return {t["name"]: int(t["id"]) for t in tags}

    def tag_post(self, thread_id: int, names: list[str]) -> None:
        """Tags the post's author chose when posting."""
        thread = self._channels[thread_id]
        by_name = {t["name"]: t["id"] for t in self._channels[int(thread["parent_id"])]["available_tags"]}
        thread["applied_tags"] = [by_name[name] for name in names]

    def applied_tag_names(self, thread_id: int) -> list[str]:
        """The names of the tags on a forum post, in the order they were applied."""
        thread = self._channels[thread_id]
        by_id = {t["id"]: t["name"] for t in self._channels[int(thread["parent_id"])].get("available_tags", [])}
        return [by_id.get(tag, tag) for tag in thread.get("applied_tags", [])]

    def _edit_applied_tags(self, channel: dict[str, Any], body: dict[str, Any]) -> None:
        """PATCH /channels/{thread} with applied_tags, checked as Discord does."""
        if "applied_tags" not in body:
            return
        parent = self._channels.get(int(channel.get("parent_id") or 0))
        if parent is None or parent.get("type") not in (15, 16) or "thread_metadata" not in channel:
            raise TagError(400, "Invalid Form Body (applied_tags: not a forum post)", 50035)
        wanted = [str(tag) for tag in body["applied_tags"]]
        available = {t["id"]: t for t in parent.get("available_tags", [])}
        if len(wanted) > MAX_APPLIED_TAGS or any(tag not in available for tag in wanted):
            raise TagError(400, "Invalid Form Body (applied_tags)", 50035)
        changed = set(wanted) ^ set(channel.get("applied_tags", []))
        moderated = any(available[tag]["moderated"] for tag in changed if tag in available)
        owner = channel.get("owner_id") == str(self.bot_id)
        if not self.bot_manages_threads and (moderated or not owner):
            raise TagError(403, "Missing Permissions", 50013)
        channel["applied_tags"] = wanted
