"""The pool of Uppzy clients (one per key, bounded, an evicted client closed once idle) and the credentials lookup,
against the simulator and a real SQLite store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet

from core.config import Secret
from core.credentials import UppzyCredentials, WorkspaceCredentials
from core.retry import RetryPolicy
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from core.uppzy import UppzyClient
from core.uppzy_pool import UppzyPool
from core.uppzy_types import Timeouts
from simulator.keys import key_fingerprint

KEYS = {"pool-key-aaaa-1111": ("site-a",), "pool-key-bbbb-2222": ("site-b",)}


def _pool(base_url: str, made: list[UppzyClient], size: int) -> UppzyPool:
    def factory(api_key: Secret, site_id: str) -> UppzyClient:
        client = UppzyClient(base_url=base_url, api_key=api_key, site_id=site_id, retry=RetryPolicy.no_wait(),
                             timeouts=Timeouts(1, 2, 3))
        made.append(client)
        return client

    return UppzyPool(factory, size=size)


async def test_one_client_per_key_and_the_least_recent_is_closed_once_idle(make_sim) -> None:
    sim = await make_sim(keys=KEYS)
    made: list[UppzyClient] = []
    pool = _pool(sim.base_url, made, size=1)
    a = pool.client(UppzyCredentials("site-a", Secret("pool-key-aaaa-1111")))
    b = pool.client(UppzyCredentials("site-b", Secret("pool-key-bbbb-2222")))
    await a.site()
    await a.site()
    assert len(made) == 1  # the same key, the same client
    sim.inject("site", stall=0.3)
    slow = asyncio.ensure_future(a.site())  # a call in flight on a's client while b's evicts it
    await asyncio.sleep(0.1)
    await b.site()
    assert len(made) == 2 and pool.evicted == 1 and not made[0]._http.is_closed  # in use: still open
    await slow
    await asyncio.sleep(0)  # the close is scheduled when the last call returns
    await asyncio.sleep(0.01)
    assert made[0]._http.is_closed
    await a.site()  # used again: reopened, evicting b's (idle: closed at once)
    await asyncio.sleep(0.01)
    assert len(made) == 3 and made[1]._http.is_closed and len(pool) == 1
    assert Counter(r.key_id for r in sim.calls("site")) == {key_fingerprint("pool-key-aaaa-1111"): 4,
                                                            key_fingerprint("pool-key-bbbb-2222"): 1}
    assert all(r.status == 200 for r in sim.calls("site"))
    await pool.aclose()
    assert made[2]._http.is_closed


async def test_credentials_own_over_default_cached_and_invalidated(tmp_path: Path, caplog) -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    store = await SqliteStore.open(str(tmp_path / "c.db"))
    default = UppzyCredentials("demo-site", Secret("deployment-key"))
    clock = [0.0]
    creds = WorkspaceCredentials(store, box, default, size=2, ttl=30.0, timer=lambda: clock[0])
    try:
        assert await creds.lookup("slack", "T1") is default
        await store.set_credentials("slack", "T1", site_id="site-1", sealed_key=box.seal("own-key-T1-xyz"),
                                    now=time.time())
        assert await creds.lookup("slack", "T1") is default  # cached
        clock[0] = 31.0  # another replica's connect is seen once the entry expires
        own = await creds.lookup("slack", "T1")
        assert own is not None and own.own and own.site_id == "site-1" and own.api_key.reveal() == "own-key-T1-xyz"
        assert "own-key-T1-xyz" not in repr(own)
        # A recorded question keeps the key of the site it was asked on.
        assert await creds.for_site("slack", "T1", "site-1") == own
        earlier = await creds.for_site("slack", "T1", "demo-site")
        assert earlier is not None and earlier.api_key == default.api_key
        await store.set_credentials("slack", "T1", site_id="site-2", sealed_key=box.seal("own-key-T1-new"),
                                    now=time.time())
        creds.invalidate("slack", "T1")
        assert (await creds.lookup("slack", "T1")).site_id == "site-2"  # type: ignore[union-attr]
        # Sealed with a key no longer configured: the deployment's, and one line that names no key.
        other = SecretBox([Fernet.generate_key().decode()])
        await store.set_credentials("slack", "T2", site_id="s", sealed_key=other.seal("lost-key-abcdef"),
                                    now=time.time())
        with caplog.at_level(logging.ERROR):
            assert await creds.lookup("slack", "T2") is default
        assert "SECRETS_KEY" in caplog.text and "lost-key" not in caplog.text
        assert await WorkspaceCredentials(store, box, None).lookup("slack", "T3") is None
    finally:
        await store.close()


async def test_a_burst_of_first_lookups_reads_and_opens_a_workspace_key_once(tmp_path: Path) -> None:
    """Fifty questions of a workspace at once (a burst, or a restart resuming them): one store read and one
    decryption for all, every caller the same credentials."""
    box = SecretBox([Fernet.generate_key().decode()])
    store = await SqliteStore.open(str(tmp_path / "burst.db"))
    try:
        await store.set_credentials("slack", "T1", site_id="site-1", sealed_key=box.seal("own-key-T1-burst"),
                                    now=time.time())
        reads: list[str] = []
        real = store.get_credentials

        async def counted(platform: str, workspace_id: str) -> object:
            reads.append(workspace_id)
            return await real(platform, workspace_id)

        store.get_credentials = counted  # type: ignore[method-assign]
        creds = WorkspaceCredentials(store, box, None)
        found = await asyncio.gather(*(creds.own("slack", "T1") for _ in range(50)))
        assert reads == ["T1"]
        assert all(c is found[0] for c in found) and found[0] is not None and found[0].site_id == "site-1"
    finally:
        await store.close()
