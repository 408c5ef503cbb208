"""An admin connects a workspace to its own Uppzy site and API key: checked against Uppzy first, then stored
sealed; the key is never echoed, logged or kept in an exception's text."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from core.config import Secret
from core.errors import (
    UppzyAuthError,
    UppzyError,
    UppzyForbidden,
    UppzyNotFound,
    UppzyRateLimited,
    UppzyTimeout,
    UppzyUnavailable,
)
from core.ports import ConnectResult, Store
from core.redaction import register_secret
from core.secrets_box import SecretBox

__all__ = ["CHECK_TIMEOUT", "ConnectResult", "Connector", "KeyCheck", "key_problem"]

log = logging.getLogger(__name__)

KeyCheck = Callable[[str, Secret], Awaitable[None]]  # (site_id, key): returns when Uppzy accepts, else raises
CHECK_TIMEOUT = 2.5  # Slack wants a modal's answer within 3 s: the check must end before that
MAX_SITE = 200
MAX_KEY = 1000

SITE_MISSING = "Enter the Uppzy site id."
KEY_MISSING = "Enter the Uppzy API key."
SITE_BAD = "The site id must be one line without spaces (at most 200 characters)."
KEY_BAD = "The API key must be one line without spaces (at most 1000 characters)."
NO_SECRETS_KEY = ("This deployment cannot store Uppzy keys yet: whoever runs the bot must set SECRETS_KEY "
                  "(see the README), then try again.")
REFUSED = "Uppzy refused this API key (401): check that it is complete and not revoked."
UNREACHABLE = "Uppzy could not be reached; try again."
BUSY = "Uppzy is busy right now (429); try again in a minute."
NOT_SAVED = "The connection could not be saved; try again."


def key_problem(exc: BaseException, site_id: str) -> tuple[str, str | None]:
    """(line for the admin, form field) for what a key check raised; never includes the key."""
    if isinstance(exc, UppzyAuthError):
        return REFUSED, "api_key"
    if isinstance(exc, UppzyForbidden | UppzyNotFound):
        status = 403 if isinstance(exc, UppzyForbidden) else 404
        return f"This key cannot use site {site_id} ({status}): check the site id, or use a key of that site.", "site"
    if isinstance(exc, UppzyRateLimited):
        return BUSY, None
    if isinstance(exc, UppzyUnavailable | UppzyTimeout | TimeoutError | OSError):
        return UNREACHABLE, None
    if isinstance(exc, UppzyError):
        status = f" (HTTP {exc.status})" if exc.status else ""
        return f"Uppzy did not accept this site id and key{status}.", "site"
    return UNREACHABLE, None


def _shape_problem(value: str, limit: int) -> bool:
    return len(value) > limit or any(ch.isspace() or not ch.isprintable() for ch in value)


class Connector:
    """`connect` checks a workspace's key against its site with `check_key`, seals it with `box`, saves it with
    Store.set_credentials and tells `on_change(platform, workspace_id)` (the credentials cache drops that entry)."""

    def __init__(self, store: Store, box: SecretBox | None, check_key: KeyCheck,
                 on_change: Callable[[str, str], None], *, check_timeout: float = CHECK_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.box = box
        self.check_key = check_key
        self.on_change = on_change
        self.check_timeout = check_timeout
        self.clock = clock

    async def connect(self, platform: str, workspace_id: str, site_id: str, api_key: str) -> ConnectResult:
        """ok after Uppzy accepted the key for the site and it is stored sealed; else one line and its field."""
        site, key = (site_id or "").strip(), (api_key or "").strip()
        if not site:
            return ConnectResult(False, SITE_MISSING, "site")
        if _shape_problem(site, MAX_SITE):
            return ConnectResult(False, SITE_BAD, "site")
        if not key:
            return ConnectResult(False, KEY_MISSING, "api_key", site)
        if _shape_problem(key, MAX_KEY):
            return ConnectResult(False, KEY_BAD, "api_key", site)
        if self.box is None:
            log.warning("connect refused for %s workspace=%s: SECRETS_KEY is not set", platform, workspace_id)
            return ConnectResult(False, NO_SECRETS_KEY, None, site)
        try:
            async with asyncio.timeout(self.check_timeout):
                await self.check_key(site, Secret(key))
        except Exception as exc:  # never re-raised: its text could hold anything
            message, field = key_problem(exc, site)
            log.info("connect refused for %s workspace=%s site=%s: %s", platform, workspace_id, site,
                     type(exc).__name__)
            return ConnectResult(False, message, field, site)
        register_secret(key)  # a real key now: blanked in every log line from here on
        try:
            await self.store.set_credentials(platform, workspace_id, site_id=site, sealed_key=self.box.seal(key),
                                             now=self.clock())
        except Exception as exc:
            log.error("saving the connection of %s workspace=%s failed: %s", platform, workspace_id,
                      type(exc).__name__)
            return ConnectResult(False, NOT_SAVED, None, site)
        self._changed(platform, workspace_id)
        log.info("%s workspace=%s connected to its own Uppzy site=%s", platform, workspace_id, site)
        return ConnectResult(True, f"Connected to Uppzy site {site}. It applies from the next question.", None, site)

    async def connected_site(self, platform: str, workspace_id: str) -> str | None:
        """The site of the workspace's own connection, else None."""
        found = await self.store.get_credentials(platform, workspace_id)
        return found[0] if found else None

    async def forget(self, platform: str, workspace_id: str) -> None:
        """The bot left the workspace: Store.forget_workspace, then on_change."""
        await self.store.forget_workspace(platform, workspace_id)
        self._changed(platform, workspace_id)
        log.info("%s workspace=%s forgotten: connection, settings and channel modes removed", platform, workspace_id)

    def _changed(self, platform: str, workspace_id: str) -> None:
        try:
            self.on_change(platform, workspace_id)
        except Exception:
            log.exception("on_change for %s workspace=%s failed", platform, workspace_id)
