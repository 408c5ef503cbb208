"""Uppzy session ids, made and read in one place: the conversation key per strategy and its numbered successors."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.models import PRIVATE, ReplyTarget

__all__ = ["belongs_to_user", "conversation_key", "session_id", "user_prefix"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def _part(value: str) -> str:
    return _UNSAFE.sub("_", value)


def conversation_key(target: ReplyTarget, strategy: str, scope: Sequence[str] = ()) -> str:
    """`<platform>-user-<user>-<channel>` by default; per thread or per user when the workspace chose so; each part
    of `scope` appended after a colon (`…:<workspace>:<site>`: see core.routing.conversation_scope).

    The channel is the conversation's channel (a thread's parent), so a conversation keeps its session as it
    moves into its thread.

    A private question (the target's `private` extra names the channel it was asked in; the answer goes to the
    asker alone) has its own key whatever the strategy, `<platform>-user-<user>-<channel>-private`: never the
    asker's public conversation in that channel, nor their DM's. A target's `session` extra appends `-<session>`:
    its own conversation beside the channel's (Discord's `/ask` answered through the interaction).
    """
    p, user, channel = _part(target.platform), _part(target.user_id), _part(target.channel_id)
    private = target.extra(PRIVATE)
    if private:
        key = f"{p}-user-{user}-{_part(private)}-private"
    elif strategy == "thread":
        key = f"{p}-thread-{channel}-{_part(target.thread_root)}"
    elif strategy == "user":
        key = f"{p}-user-{user}"
    else:
        key = f"{p}-user-{user}-{channel}"
    own = target.extra("session")  # a conversation kept apart from the channel's (e.g. Discord's `/ask`)
    if own:
        key += f"-{_part(own)}"
    return key + "".join(f":{_part(part)}" for part in scope)


def session_id(key: str, generation: int, *, stamp: float | None = None) -> str:
    """The id of a key's `generation`-th session: the key itself first, then `<key>-2`, `<key>-3`…

    Generations never repeat while the key's sessions are kept. Closed sessions are pruned after the retention
    window, after which a returning key starts again at 1 and Uppzy may answer 409 (closed) for an id it already
    had. With `stamp` (seconds since the epoch, core's clock) the id also carries it, in milliseconds base 36:
    `<key>-<generation>-<stamp>` cannot have been used before, so a second 409 in a row ends there.
    """
    if generation < 1:
        raise ValueError("session generations start at 1")
    if stamp is not None:
        return f"{key}-{generation}-{_base36(int(stamp * 1000))}"
    return key if generation == 1 else f"{key}-{generation}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def user_prefix(platform: str, user_id: str) -> str:
    """What every session id of one user on one platform starts with (the default and `user` strategies)."""
    return f"{_part(platform)}-user-{_part(user_id)}"


def belongs_to_user(session: str, platform: str, user_id: str) -> bool:
    """Whether an Uppzy session id (from the session list) is one of this user's conversations."""
    prefix = user_prefix(platform, user_id)
    return session == prefix or session.startswith((prefix + "-", prefix + ":"))
