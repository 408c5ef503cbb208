"""Which Uppzy site and key a workspace's questions use: its own connection, else the deployment's, else none."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import TTLCache

from core.config import Secret
from core.inflight import InFlight
from core.ports import Store
from core.redaction import register_secret
from core.secrets_box import SecretBox, SecretUnreadable

__all__ = ["CACHE_SIZE", "CACHE_TTL", "UppzyCredentials", "WorkspaceCredentials", "key_id"]

log = logging.getLogger(__name__)
CACHE_SIZE = 10_000  # workspaces whose connection is remembered (the least recently asked go first)
CACHE_TTL = 30.0  # seconds: another replica's connect (or disconnect) is seen within this even without a notice


def key_id(api_key: Secret) -> str:
    """A name for a key that is not the key: 16 hex digits of its SHA-256 (pool slots, budget ledger names)."""
    return hashlib.sha256(api_key.reveal().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class UppzyCredentials:
    """An Uppzy site and the API key its calls carry; `own` when the workspace connected it itself."""

    site_id: str
    api_key: Secret
    own: bool = False
    # The key's fingerprint (never the key), worked out once: it is read on every Uppzy call to pick the client.
    key_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(self.api_key))

    def __repr__(self) -> str:
        return f"UppzyCredentials(site_id={self.site_id!r}, key={self.key_id}, own={self.own})"


class WorkspaceCredentials:
    """A workspace's own connection (Store.get_credentials, opened with the box), else the deployment default.

    Lookups are cached (bounded, expiring after CACHE_TTL so other replicas' connects arrive); `invalidate` drops one
    workspace at once (after a connect or an uninstall in this process).
    """

    def __init__(self, store: Store, box: SecretBox | None, default: UppzyCredentials | None, *,
                 size: int = CACHE_SIZE, ttl: float = CACHE_TTL, timer: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._box = box
        self.default = default
        self._cache: TTLCache[tuple[str, str], UppzyCredentials | None] = TTLCache(maxsize=size, ttl=ttl,
                                                                                    timer=timer)
        self._version = 0  # bumped by invalidate: a read that raced it is not cached
        self._loading: InFlight[tuple[str, str], UppzyCredentials | None] = InFlight()

    async def own(self, platform: str, workspace_id: str) -> UppzyCredentials | None:
        """The workspace's own connection, if it has one this deployment can open (a burst of first messages, or a
        restart resuming many questions, shares one read and one decryption)."""
        key = (platform, workspace_id)
        try:
            return self._cache[key]
        except KeyError:
            pass
        return await self._loading.load(key, lambda: self._cached_read(key))

    async def _cached_read(self, key: tuple[str, str]) -> UppzyCredentials | None:
        version = self._version
        found = await self._read(*key)
        if version == self._version:
            self._cache[key] = found
        return found

    async def _read(self, platform: str, workspace_id: str) -> UppzyCredentials | None:
        row = await self._store.get_credentials(platform, workspace_id)
        if row is None:
            return None
        site_id, sealed = row
        if self._box is None:
            log.error("workspace %s:%s has its own Uppzy key but SECRETS_KEY is not set; using the deployment's",
                      platform, workspace_id)
            return None
        try:
            plain = self._box.open(sealed)
        except SecretUnreadable as exc:
            log.error("workspace %s:%s: %s", platform, workspace_id, exc)
            return None
        register_secret(plain)
        return UppzyCredentials(site_id, Secret(plain), own=True)

    async def lookup(self, platform: str, workspace_id: str) -> UppzyCredentials | None:
        """The workspace's own connection, else the deployment default, else None (not connected)."""
        return await self.own(platform, workspace_id) or self.default

    async def for_site(self, platform: str, workspace_id: str, site_id: str) -> UppzyCredentials | None:
        """The key for a question or session already recorded on `site_id` (its polls, feedback, close, also after
        a restart): the workspace's own connection while it is still for that site, else the deployment key (the one
        a question on another site was sent with, before the workspace connected its own), else its own, else None.
        The site is always the recorded one."""
        own = await self.own(platform, workspace_id)
        chosen = own if own is not None and (own.site_id == site_id or self.default is None) else self.default
        if chosen is None:
            return None
        return chosen if chosen.site_id == site_id else UppzyCredentials(site_id, chosen.api_key, own=chosen.own)

    def invalidate(self, platform: str, workspace_id: str) -> None:
        """The workspace connected, disconnected or was removed: read its connection again on next use."""
        self._version += 1
        self._cache.pop((platform, workspace_id), None)

    def forget(self, platform: str | None, workspace_id: str | None) -> None:
        """As WorkspaceSettingsService.forget (a store notice: None means any workspace may have changed)."""
        if platform is None:
            self._version += 1
            self._cache.clear()
        else:
            self.invalidate(platform, workspace_id or "")
