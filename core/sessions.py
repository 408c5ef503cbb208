"""Which Uppzy session a message belongs to: the conversation key per the workspace's strategy."""

from __future__ import annotations

import re

from core.models import ReplyTarget

__all__ = ["session_key"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def _part(value: str) -> str:
    return _UNSAFE.sub("_", value)


def session_key(target: ReplyTarget, strategy: str) -> str:
    """`<platform>-user-<user>-<channel>` by default; per thread or per user when the workspace chose so.

    The channel is the conversation's channel (a thread's parent), so a conversation keeps its session
    as it moves into its thread. A closed session's successor gets a '-N' suffix from the store.
    """
    p, user, channel = _part(target.platform), _part(target.user_id), _part(target.channel_id)
    if strategy == "thread":
        return f"{p}-thread-{channel}-{_part(target.thread_root)}"
    if strategy == "user":
        return f"{p}-user-{user}"
    return f"{p}-user-{user}-{channel}"
