"""Who a Slack user is (admin? email?), from users.info with a small bounded cache so events stay cheap."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["SlackUsers"]

log = logging.getLogger(__name__)
_MISSING = object()


class SlackUsers:
    """Cached users.info lookups: admin checks and (only when a workspace allows it) email addresses."""

    def __init__(self, client: AsyncWebClient, *, admin_ids: frozenset[str] = frozenset(), ttl: float = 300.0,
                 size: int = 2000, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._admin_ids = admin_ids
        self._cache: TTLCache[str, dict[str, Any] | None] = TTLCache(maxsize=size, ttl=ttl, timer=clock)

    async def info(self, user_id: str) -> dict[str, Any] | None:
        """The user object, or None if Slack would not say (unknown user, missing scope, outage)."""
        cached = self._cache.get(user_id, _MISSING)  # one lookup: an entry may expire between two
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        try:
            response = await self._client.users_info(user=user_id)
            user = response.get("user")
        except SlackApiError as exc:
            log.warning("users.info for user=%s failed: %s", user_id, exc.response.get("error"))
            user = None
        except Exception as exc:  # network trouble: do not cache, try again next time
            log.warning("users.info for user=%s failed: %s", user_id, type(exc).__name__)
            return None
        found = user if isinstance(user, dict) else None
        self._cache[user_id] = found
        return found

    async def is_admin(self, user_id: str) -> bool:
        """Workspace admin or owner per Slack, or named in SLACK_ADMIN_USER_IDS."""
        if user_id in self._admin_ids:
            return True
        user = await self.info(user_id)
        return bool(user) and any(user.get(k) for k in ("is_admin", "is_owner", "is_primary_owner"))

    async def email(self, user_id: str) -> str | None:
        """The profile email (needs users:read.email); None when hidden or unknown."""
        user = await self.info(user_id)
        profile = (user or {}).get("profile") or {}
        email = profile.get("email")
        return email if isinstance(email, str) and "@" in email else None
