"""Who a Slack user is (admin? email?), from users.info with a small bounded cache so events stay cheap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.teams import TeamClient, TeamClients

__all__ = ["SlackUsers"]

log = logging.getLogger(__name__)
_MISSING = object()
_PASSING = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class SlackUsers:
    """Cached users.info lookups: admin checks and (only when a workspace allows it) email addresses.

    The email is looked up before a question is acked, so it goes through `quick_client` (no 429 waits: a
    rate-limited directory answers "unknown" at once instead of holding the ack), and concurrent lookups of one
    user share one call (a burst from one person asks Slack once).
    """

    def __init__(self, client: AsyncWebClient, *, admin_ids: frozenset[str] = frozenset(), ttl: float = 300.0,
                 size: int = 2000, clock: Callable[[], float] = time.monotonic,
                 quick_client: AsyncWebClient | None = None, teams: TeamClients | None = None) -> None:
        self._teams = teams or TeamClients(TeamClient(None, client, quick_client or client))
        self._admin_ids = admin_ids
        # Keyed by (team, user): with many workspaces each team's directory is asked with its own token.
        self._cache: TTLCache[tuple[str, str], dict[str, Any] | None] = TTLCache(maxsize=size, ttl=ttl, timer=clock)
        self._asking: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]] = {}

    async def info(self, user_id: str, *, quick: bool = False) -> dict[str, Any] | None:
        """The user object, or None if Slack would not say (unknown user, missing scope, outage, rate limit)."""
        team = self._teams.current()
        key = (team.team_id or "", user_id)
        cached = self._cache.get(key, _MISSING)  # one lookup: an entry may expire between two
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        asking = self._asking.get(key)
        if asking is not None:
            return await asyncio.shield(asking)
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._asking[key] = future
        try:
            found = await self._ask(key, team.cosmetic if quick else team.web)
        except BaseException:
            future.set_result(None)  # whoever shares this lookup learns nothing, and the next one asks again
            raise
        else:
            future.set_result(found)
        finally:
            del self._asking[key]
        return found

    async def _ask(self, key: tuple[str, str], client: AsyncWebClient) -> dict[str, Any] | None:
        user_id = key[1]
        try:
            response = await client.users_info(user=user_id)
            user = response.get("user")
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("users.info for user=%s failed: %s", user_id, error)
            if error in _PASSING or getattr(exc.response, "status_code", 200) >= 429:
                return None  # passing trouble: not remembered, the next question asks again
            user = None
        except Exception as exc:  # network trouble: do not cache, try again next time
            log.warning("users.info for user=%s failed: %s", user_id, type(exc).__name__)
            return None
        found = user if isinstance(user, dict) else None
        self._cache[key] = found
        return found

    async def is_admin(self, user_id: str) -> bool:
        """Workspace admin or owner per Slack, or named in SLACK_ADMIN_USER_IDS."""
        if user_id in self._admin_ids:
            return True
        user = await self.info(user_id)
        return bool(user) and any(user.get(k) for k in ("is_admin", "is_owner", "is_primary_owner"))

    async def email(self, user_id: str) -> str | None:
        """The profile email (needs users:read.email); None when hidden or unknown."""
        user = await self.info(user_id, quick=True)
        profile = (user or {}).get("profile") or {}
        email = profile.get("email")
        return email if isinstance(email, str) and "@" in email else None
