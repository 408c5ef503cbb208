"""Which Web API client speaks for a workspace: the one bot token (single workspace), or each installed team's own.

The adapter, the user directory and the admin surfaces read `TeamClients.current()`; whoever starts work for a
team binds it first: a bolt middleware for every event bolt dispatches, `using(team)` for calls core makes later
(answers, notices, reactions), SlackEvents for the question fast path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["Find", "MakeClient", "TeamClient", "TeamClients"]

MakeClient = Callable[[str | None, bool], AsyncWebClient]  # (token, cosmetic) -> a client on the shared session
Find = Callable[[str | None, str | None], Awaitable[Any]]  # (enterprise, team) -> bolt Installation or None

_current: ContextVar[TeamClient | None] = ContextVar("uppzy_slack_team", default=None)


@dataclass(frozen=True, slots=True)
class TeamClient:
    """One team's clients (the cosmetic twin never waits out a 429) and its bot's identity."""

    team_id: str | None
    web: AsyncWebClient
    cosmetic: AsyncWebClient
    bot_user_id: str | None = None
    bot_id: str | None = None


class TeamClients:
    """The default clients (single workspace), or, with `find`, each installed team's clients built from its stored
    installation on first use and kept for `ttl` seconds (at most `size` teams): a token rotated or an uninstall on
    another replica is seen within `ttl`; here at once (`forget`)."""

    def __init__(self, default: TeamClient, *, find: Find | None = None, make: MakeClient | None = None,
                 ttl: float = 60.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.default = default
        self._find = find
        self._make = make
        self._cache: TTLCache[tuple[str, str], TeamClient] = TTLCache(maxsize=size, ttl=ttl, timer=clock)
        self._nobody: TeamClient | None = None

    @property
    def many(self) -> bool:
        """True when each team has its own token (OAuth distribution)."""
        return self._find is not None

    def current(self) -> TeamClient:
        """The team bound to the running task, else the default."""
        return _current.get() or self.default

    async def lookup(self, team_id: str | None, enterprise_id: str | None = None) -> TeamClient | None:
        """The team's clients; None when it has no installation (single workspace: always the default)."""
        if self._find is None or self._make is None:
            return self.default
        key = (enterprise_id or "", team_id or "")
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        installation = await self._find(enterprise_id, team_id)
        token = getattr(installation, "bot_token", None)
        if not token:
            return None
        team = TeamClient(team_id, self._make(token, False), self._make(token, True),
                          getattr(installation, "bot_user_id", None), getattr(installation, "bot_id", None))
        self._cache[key] = team
        return team

    def bind(self, team: TeamClient | None) -> None:
        """Make `team` current for the rest of the running task (and the tasks it starts)."""
        _current.set(team)

    @contextlib.contextmanager
    def bound(self, team: TeamClient) -> Iterator[TeamClient]:
        """Within the block (and tasks started in it), current() is `team`."""
        token = _current.set(team)
        try:
            yield team
        finally:
            _current.reset(token)

    def anonymous(self, team_id: str | None) -> TeamClient:
        """Clients without a token, for a team that has none: Slack refuses their calls (not_authed)."""
        if self._nobody is None:
            assert self._make is not None
            self._nobody = TeamClient(None, self._make(None, False), self._make(None, True))
        return TeamClient(team_id, self._nobody.web, self._nobody.cosmetic)

    @contextlib.asynccontextmanager
    async def using(self, team_id: str | None, enterprise_id: str | None = None) -> AsyncIterator[TeamClient]:
        """Within the block, current() is this team's clients (a team without an installation: `anonymous`)."""
        if self._find is None:
            yield self.current()
            return
        found = await self.lookup(team_id, enterprise_id) or self.anonymous(team_id)
        token = _current.set(found)
        try:
            yield found
        finally:
            _current.reset(token)

    def forget(self, team_id: str | None, enterprise_id: str | None = None, *, org_wide: bool = False) -> None:
        """Drop what is cached of a team (uninstalled, tokens revoked); `org_wide`: of every team of the enterprise."""
        for key in list(self._cache):
            enterprise, team = key
            if (team_id and team == team_id) or (org_wide and enterprise_id and enterprise == enterprise_id):
                self._cache.pop(key, None)

    def clear(self) -> None:
        """Drop every cached team (the session they share is closing)."""
        self._cache.clear()
        self._nobody = None
