"""Installed workspaces and OAuth states on the project's Store, every token sealed: slack-bolt's OAuth flow saves and
finds installations here (not in files), and token rotation runs under the store's row lock, one refresh at a time."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator

from core.ports import Store

__all__ = ["ROTATE_MINUTES", "STATE_SECONDS", "Sealer", "StoreInstallations", "StoreStates"]

log = logging.getLogger(__name__)
ROTATE_MINUTES = 120  # refresh a rotating token this long before it expires (bolt's own default, so it never has to)
STATE_SECONDS = 600  # an OAuth state is good for ten minutes, once
_TOKENS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")


class Sealer(Protocol):
    """What seals tokens at rest (core.secrets_box.SecretBox, handed over by the composition root)."""

    def seal(self, plain: str) -> str:
        """The sealed text of `plain`."""
        ...

    def open(self, sealed: str) -> str:
        """The clear text of a sealed value (ValueError when no key opens it)."""
        ...


def _team_key(enterprise_id: str | None, team_id: str | None, org_wide: bool | None) -> str | None:
    """The team part of the store key: None for an Enterprise Grid org-wide install (one row for the whole org)."""
    return None if org_wide and enterprise_id else team_id


class StoreInstallations(AsyncInstallationStore):
    """bolt's AsyncInstallationStore on Store: one row per (enterprise, team) holding the sealed JSON of the latest
    Installation. Opened tokens are handed to `on_secret` (log redaction). A rotating bot token due within
    ROTATE_MINUTES is refreshed while finding it, through Store.refresh_installation: replicas never refresh one
    installation at once, and the second caller finds the first one's fresh token."""

    def __init__(self, store: Store, box: Sealer, *, rotator: AsyncTokenRotator | None = None,
                 on_secret: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.box = box
        self.rotator = rotator
        self.on_secret = on_secret
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    # ---- sealing --------------------------------------------------------------------------------------

    def _seal(self, installation: Installation) -> str:
        return self.box.seal(json.dumps(installation.__dict__))

    def _open(self, sealed: str, where: str) -> Installation | None:
        try:
            data: dict[str, Any] = json.loads(self.box.open(sealed))
        except ValueError as exc:  # SecretUnreadable (a wrong SECRETS_KEY) or damaged JSON: never the value itself
            log.error("Slack installation of %s cannot be opened: %s", where, exc)
            return None
        installation = Installation(**data)
        self._redact(installation)
        return installation

    # ---- AsyncInstallationStore ---------------------------------------------------------------------------

    async def async_save(self, installation: Installation) -> None:
        """Insert or replace the workspace's (or org's) installation, sealed."""
        team = _team_key(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        await self.store.save_installation(installation.enterprise_id, team, self._seal(installation),
                                           now=self.clock())
        self._redact(installation)

    def _redact(self, installation: Installation) -> None:
        """Hand its tokens to `on_secret`: blanked in every log line from now on."""
        for name in _TOKENS:
            value = getattr(installation, name, None)
            if value:
                self.on_secret(str(value))

    async def async_save_bot(self, bot: Bot) -> None:
        """A refreshed bot (bolt's bot-only mode): its token fields written into the stored installation."""
        team = _team_key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        found = await self._find(bot.enterprise_id, team, rotate=False)
        if found is None:
            return
        found.bot_token, found.bot_refresh_token = bot.bot_token, bot.bot_refresh_token
        found.bot_token_expires_at, found.bot_scopes = bot.bot_token_expires_at, bot.bot_scopes
        await self.async_save(found)

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        """The latest installation of the team (or its org-wide one); None for a user who did not install it (we keep
        no per-user installations: the bot needs only its bot token)."""
        found = await self._find(enterprise_id, _team_key(enterprise_id, team_id, is_enterprise_install))
        if found is None or (user_id is not None and found.user_id != user_id):
            return None
        return found

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        """The bot part of the installation."""
        found = await self.async_find_installation(enterprise_id=enterprise_id, team_id=team_id,
                                                   is_enterprise_install=is_enterprise_install)
        return found.to_bot() if found is not None and found.bot_token else None

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Remove the team's installation (the bot token is all it holds that we use)."""
        await self.delete(enterprise_id, team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        """Remove the installation, unless only one user's token is meant (we keep none of those)."""
        if user_id is None:
            await self.delete(enterprise_id, team_id)

    async def delete(self, enterprise_id: str | None, team_id: str | None, *, org_wide: bool = False) -> bool:
        """Remove the team's row, or the org's row for an org-wide uninstall; True when one was there."""
        gone = await self.store.delete_installation(enterprise_id, team_id)
        if org_wide and enterprise_id and team_id:
            gone = await self.store.delete_installation(enterprise_id, None) or gone
        return gone

    # ---- finding, with rotation -------------------------------------------------------------------------

    async def _find(self, enterprise_id: str | None, team_id: str | None, *, rotate: bool = True
                    ) -> Installation | None:
        where = f"team={team_id} enterprise={enterprise_id}"
        sealed = await self.store.find_installation(enterprise_id, team_id)
        found = self._open(sealed, where) if sealed is not None else None
        if found is None or not rotate or not self._due(found):
            return found
        try:
            fresh = await self.store.refresh_installation(enterprise_id, team_id, self._refresher(where))
        except SlackTokenRotationError as exc:  # the current token may still work a while: keep it, log why
            error = getattr(getattr(exc, "api_error", None), "response", None) or {}
            log.warning("Slack token rotation for %s failed (%s); using the current token", where,
                        error.get("error") if hasattr(error, "get") else "error")
            return found
        opened = self._open(fresh, where) if fresh is not None else None
        return opened or found

    def _due(self, installation: Installation) -> bool:
        """A rotating bot token that expires within ROTATE_MINUTES."""
        expires = installation.bot_token_expires_at
        return bool(installation.bot_refresh_token) and expires is not None \
            and expires <= self.clock() + ROTATE_MINUTES * 60

    def _refresher(self, where: str) -> Callable[[str], Any]:
        async def refresh(current_sealed: str) -> str | None:
            current = self._open(current_sealed, where)
            if current is None or not self._due(current) or self.rotator is None:
                return None  # refreshed by another caller (or replica) while we waited for the row
            fresh = await self.rotator.perform_token_rotation(installation=current,
                                                              minutes_before_expiration=ROTATE_MINUTES)
            if fresh is None:
                return None
            log.info("Slack bot token rotated for %s", where)
            self._redact(fresh)
            return self._seal(fresh)

        return refresh


class StoreStates(AsyncOAuthStateStore):
    """OAuth states on Store: issued with the authorize URL, good once for STATE_SECONDS (bolt also pins each to
    the browser that asked, by a cookie)."""

    def __init__(self, store: Store, *, expiration_seconds: int = STATE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.expiration_seconds = expiration_seconds
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A new unguessable state, remembered until it expires."""
        state = secrets.token_urlsafe(32)
        await self.store.issue_oauth_state(state, expires_at=self.clock() + self.expiration_seconds)
        return state

    async def async_consume(self, state: str) -> bool:
        """True exactly once for a state we issued that has not expired."""
        if not state or len(state) > 200:
            return False
        return await self.store.consume_oauth_state(state, now=self.clock())
