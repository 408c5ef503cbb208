"""`uppzy-bot check --workspaces`: every workspace's own Uppzy key opened and checked against its site, one line each,
never printing a key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bots.check import CheckResult
from core.config import Secret, Settings
from core.connect import key_problem
from core.secrets_box import GENERATE_FERNET_KEY, SecretBox, SecretUnreadable

__all__ = ["workspace_results"]

PAGE = 200
CONCURRENCY = 8
KeyCheck = Callable[[str, Secret], Awaitable[None]]


async def workspace_results(settings: Settings, *, check_key: KeyCheck | None = None) -> list[CheckResult]:
    """One CheckResult per stored connection (platform, workspace id, site: ok or why not); SECRETS_KEY and the
    database are checked first, each a ✗ line of its own when they fail."""
    from bots.runner import open_store, uppzy_key_check
    from core.health import StoreUnavailable

    if not settings.secrets_key:
        return [CheckResult("workspaces", False, "SECRETS_KEY is not set: stored keys cannot be opened; set the key "
                            f"they were sealed with (generate a new one with: {GENERATE_FERNET_KEY})", 0.0)]
    box = SecretBox.from_setting(settings.secrets_key.reveal())
    check = check_key or uppzy_key_check(settings)
    try:
        store = await open_store(settings, wait=0)
    except (StoreUnavailable, OSError) as exc:
        return [CheckResult("workspaces", False, f"the database cannot be opened: {type(exc).__name__}", 0.0)]
    results: list[CheckResult] = []
    gate = asyncio.Semaphore(CONCURRENCY)
    try:
        after: tuple[str, str] | None = None
        while True:
            page = await store.workspace_connections(after=after, limit=PAGE)
            results += await asyncio.gather(*(_one(row, box, check, gate) for row in page))
            if len(page) < PAGE:
                break
            after = (page[-1][0], page[-1][1])
    finally:
        await store.close()
    if not results:
        results.append(CheckResult("workspaces", True, "no workspace is connected to its own Uppzy key", 0.0))
    return results


async def _one(row: tuple[str, str, str, str], box: SecretBox, check: KeyCheck,
               gate: asyncio.Semaphore) -> CheckResult:
    platform, workspace, site, sealed = row
    name = f"workspace {platform} {workspace} site {site}"
    started = time.monotonic()
    async with gate:
        try:
            key = box.open(sealed)
        except SecretUnreadable:
            return CheckResult(name, False, "its key cannot be decrypted with SECRETS_KEY (was the key it was sealed "
                               "with removed?)", 0.0)
        try:
            await check(site, Secret(key))
            detail, ok = "key accepted for this site", True
        except Exception as exc:  # its text is never printed: only what it means
            detail, ok = key_problem(exc, site)[0], False
    return CheckResult(name, ok, detail, round((time.monotonic() - started) * 1000, 1))
