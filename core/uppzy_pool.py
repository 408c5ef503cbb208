"""One Uppzy client per distinct API key, pooled and bounded, and the per-call choice of key for core's components.

A workspace connected to its own Uppzy key gets its own client (its own connection pool, its own key header); the
deployment's client (UPPZY_API_KEY) is pinned and never evicted. Beyond `size` keys the least recently used client
is evicted and closed once no call is using it (a call in flight keeps it open until it returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from core.config import Secret
from core.credentials import UppzyCredentials, WorkspaceCredentials
from core.uppzy import UppzyClient
from core.uppzy_types import FeedbackReceipt, Rating, RequestStatus, SessionInfo, Submission

__all__ = ["POOL_SIZE", "Connections", "KeyedUppzy", "UppzyPool"]

log = logging.getLogger(__name__)
POOL_SIZE = 64  # clients (keys) kept open at once; more keys take turns, each reopened when used again


class UppzyPool:
    """UppzyClient per key fingerprint; `factory(api_key, site_id)` builds a new one (the composition root's)."""

    def __init__(self, factory: Callable[[Secret, str], UppzyClient], *, default: UppzyClient | None = None,
                 default_key: str | None = None, size: int = POOL_SIZE) -> None:
        self._factory = factory
        self._default = default
        self._default_key = default_key
        self.size = max(1, size)
        self._clients: OrderedDict[str, UppzyClient] = OrderedDict()
        self._users: dict[int, int] = {}  # id(client) -> calls using it now
        self._retired: dict[int, UppzyClient] = {}  # evicted while in use: closed when the last call returns
        self._closing: set[asyncio.Task[None]] = set()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._clients)

    def client_for(self, creds: UppzyCredentials) -> UppzyClient:
        """The client of `creds`' key (made on first use; the least recently used beyond `size` is evicted)."""
        kid = creds.key_id
        if self._default is not None and kid == self._default_key:
            return self._default
        found = self._clients.get(kid)
        if found is not None:
            self._clients.move_to_end(kid)
            return found
        made = self._clients[kid] = self._factory(creds.api_key, creds.site_id)
        while len(self._clients) > self.size:
            _, old = self._clients.popitem(last=False)
            self.evicted += 1
            if self._users.get(id(old)):
                self._retired[id(old)] = old
            else:
                self._close_later(old)
        return made

    @contextlib.asynccontextmanager
    async def use(self, creds: UppzyCredentials) -> AsyncIterator[UppzyClient]:
        """The client of `creds`, held open for the duration of one call."""
        client = self.client_for(creds)
        ident = id(client)
        self._users[ident] = self._users.get(ident, 0) + 1
        try:
            yield client
        finally:
            left = self._users[ident] - 1
            if left:
                self._users[ident] = left
            else:
                del self._users[ident]
                retired = self._retired.pop(ident, None)
                if retired is not None:
                    self._close_later(retired)

    def _close_later(self, client: UppzyClient) -> None:
        task = asyncio.ensure_future(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def client(self, creds: UppzyCredentials) -> KeyedUppzy:
        """A handle that makes each call with `creds`' key (safe to keep: an evicted client is reopened)."""
        return KeyedUppzy(self, creds)

    async def aclose(self) -> None:
        """Close every pooled client (not the deployment's: its owner closes it)."""
        clients = [*self._clients.values(), *self._retired.values()]
        self._clients.clear()
        self._retired.clear()
        await asyncio.gather(*(c.aclose() for c in clients), *self._closing, return_exceptions=True)


class KeyedUppzy:
    """The UppzyClient calls core makes, each with one key (and, unless given, its site)."""

    __slots__ = ("_pool", "creds")

    def __init__(self, pool: UppzyPool, creds: UppzyCredentials) -> None:
        self._pool = pool
        self.creds = creds

    def __repr__(self) -> str:
        return f"KeyedUppzy({self.creds!r})"

    async def submit(self, session_id: str, message: str, *, email: str | None = None,
                     site_id: str | None = None) -> Submission:
        """UppzyClient.submit with this key."""
        async with self._pool.use(self.creds) as c:
            return await c.submit(session_id, message, email=email, site_id=site_id or self.creds.site_id)

    async def status(self, request_id: str, *, site_id: str | None = None, retry: bool = True) -> RequestStatus:
        """UppzyClient.status with this key."""
        async with self._pool.use(self.creds) as c:
            return await c.status(request_id, site_id=site_id or self.creds.site_id, retry=retry)

    async def feedback(self, session_id: str, request_id: str, rating: Rating, *,
                       site_id: str | None = None) -> FeedbackReceipt:
        """UppzyClient.feedback with this key."""
        async with self._pool.use(self.creds) as c:
            return await c.feedback(session_id, request_id, rating, site_id=site_id or self.creds.site_id)

    async def close_session(self, session_id: str, *, site_id: str | None = None) -> None:
        """UppzyClient.close_session with this key."""
        async with self._pool.use(self.creds) as c:
            await c.close_session(session_id, site_id=site_id or self.creds.site_id)

    async def list_sessions(self, *, email: str | None = None, site_id: str | None = None,
                            limit: int | None = None) -> list[SessionInfo]:
        """UppzyClient.list_sessions with this key."""
        async with self._pool.use(self.creds) as c:
            return await c.list_sessions(email=email, site_id=site_id or self.creds.site_id, limit=limit)

    async def site(self, site_id: str | None = None) -> Mapping[str, Any]:
        """UppzyClient.site with this key."""
        async with self._pool.use(self.creds) as c:
            return await c.site(site_id or self.creds.site_id)


class Connections:
    """What core's components ask before calling Uppzy: the client for a workspace now, or for something recorded."""

    def __init__(self, credentials: WorkspaceCredentials, pool: UppzyPool) -> None:
        self.credentials = credentials
        self.pool = pool

    async def workspace(self, platform: str, workspace_id: str, site_id: str | None = None) -> KeyedUppzy | None:
        """A workspace's connection for a new call: its own (its site), else the deployment key on `site_id` (the
        workspace's site setting); None when it has neither."""
        own = await self.credentials.own(platform, workspace_id)
        if own is not None:
            return self.pool.client(own)
        default = self.credentials.default
        site = site_id if site_id is not None else (default.site_id if default else "")
        if default is None or not site:
            return None
        return self.pool.client(default if site == default.site_id else UppzyCredentials(site, default.api_key))

    async def recorded(self, platform: str, workspace_id: str, site_id: str) -> KeyedUppzy | None:
        """The connection of a question or session recorded on `site_id` (WorkspaceCredentials.for_site)."""
        creds = await self.credentials.for_site(platform, workspace_id, site_id)
        return None if creds is None else self.pool.client(creds)
