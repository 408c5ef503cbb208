"""Discord sharding: which shards this replica runs, IDENTIFY pacing Discord requires, one shard failing alone.

discord.py's AutoShardedClient opens one gateway session per shard id. What it lacks, added here: it ignores
`session_start_limit` (a replica restarting in a loop can use up the day's session starts, after which Discord
invalidates every session), it spaces every IDENTIFY 5 s apart whatever `max_concurrency` allows, and a shard that
fails on an event it cannot parse closes the whole client (every shard) instead of starting that shard again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import discord
from discord.gateway import ReconnectWebSocket
from discord.shard import EventItem, EventType

from core.config import Settings

__all__ = ["IdentifyPacer", "ShardPlan", "ShardedClient", "plan_shards"]

log = logging.getLogger(__name__)

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The shards this replica runs, out of how many, and Discord's session start limit at start-up."""

    count: int
    ids: tuple[int, ...]
    limits: dict[str, int]

    def describe(self) -> str:
        """'0,2 of 4', for the start-up log line."""
        return f"{','.join(map(str, self.ids))} of {self.count}"


def plan_shards(settings: Settings, recommended: int, limits: dict[str, Any]) -> ShardPlan:
    """DISCORD_SHARD_COUNT (else Discord's recommendation) and DISCORD_SHARD_IDS (else every id below the count)."""
    count = settings.discord_shard_count or max(1, int(recommended))
    ids = settings.discord_shard_ids or tuple(range(count))
    return ShardPlan(count=count, ids=ids, limits={k: int(v) for k, v in limits.items()})


class IdentifyPacer:
    """Spaces IDENTIFYs as Discord documents: per bucket (shard_id % max_concurrency) one per `window` seconds,
    and no session start while `session_start_limit` has fewer left than this replica is about to start."""

    def __init__(self, plan: ShardPlan, *, window: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        self.window = window
        self.max_concurrency = max(1, plan.limits.get("max_concurrency", 1))
        self.total = plan.limits.get("total", 1000)
        self.remaining = plan.limits.get("remaining", self.total)
        self.reset_at = loop.time() + plan.limits.get("reset_after", 0) / 1000
        self._pending = len(plan.ids)  # first IDENTIFYs still to come at start-up
        self._last: dict[int, float] = {}  # bucket -> loop time of its last IDENTIFY
        self._locks: dict[int, asyncio.Lock] = {}
        self._limit_lock = asyncio.Lock()

    def expected_delay(self, plan: ShardPlan) -> float:
        """How long the start-up IDENTIFYs may take by these rules (added to the wait for READY)."""
        loop_time = asyncio.get_running_loop().time()
        waiting = max(0.0, self.reset_at - loop_time) if self.remaining < len(plan.ids) else 0.0
        rounds = math.ceil(len(plan.ids) / self.max_concurrency) - 1
        return waiting + self.window * max(0, rounds)

    async def wait(self, shard_id: int) -> None:
        """Return when shard `shard_id` may IDENTIFY now."""
        loop = asyncio.get_running_loop()
        async with self._limit_lock:
            if self.remaining < max(1, self._pending):
                delay = max(0.0, self.reset_at - loop.time())
                log.warning("Discord allows %d more gateway session starts until its limit resets, fewer than "
                            "the %d this replica needs: waiting %.1fs before identifying", self.remaining,
                            max(1, self._pending), delay)
                await asyncio.sleep(delay)
                self.remaining, self.reset_at, self._pending = self.total, loop.time() + DAY, 0
            self.remaining -= 1
            self._pending = max(0, self._pending - 1)
        bucket = shard_id % self.max_concurrency
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            last = self._last.get(bucket)
            if last is not None:
                await asyncio.sleep(max(0.0, last + self.window - loop.time()))
            self._last[bucket] = loop.time()


class ShardedClient(discord.AutoShardedClient):
    """AutoShardedClient that paces IDENTIFYs with an IdentifyPacer and starts a shard that failed on an event
    it could not parse again on a fresh session, alone, while the other shards keep running."""

    pacer: IdentifyPacer | None = None
    reconnect_delay: float = 1.0

    def use_plan(self, plan: ShardPlan, pacer: IdentifyPacer) -> None:
        """Set before connect(): the shards to open and how to pace their IDENTIFYs."""
        self.shard_count, self.shard_ids, self.pacer = plan.count, list(plan.ids), pacer
        self._connection.shard_count = plan.count
        self._restarts: set[asyncio.Task[None]] = set()
        self._delays: dict[int, tuple[float, float]] = {}  # shard id -> (next delay, loop time of the failure)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Replaces discord.py's fixed 5 s sleep before every IDENTIFY but the first."""
        if self.pacer is not None:
            await self.pacer.wait(shard_id or 0)

    async def launch_shard(self, gateway: Any, shard_id: int, *, initial: bool = False) -> None:
        """discord.py retries a failed first connect every 5 s for ever; not once the client is closed."""
        if not self.is_closed():
            await super().launch_shard(gateway, shard_id, initial=initial)

    def shards_connected(self) -> bool:
        """Every shard of the plan has an open gateway socket."""
        ids = self.shard_ids or []
        return bool(ids) and all((info := self.get_shard(i)) is not None and not info.is_closed() for i in ids)

    async def connect(self, *, reconnect: bool = True) -> None:
        """discord.py's loop over shard events, except that a shard's unexpected exception restarts that shard
        (after a back-off) instead of closing every shard and raising."""
        self._reconnect = reconnect
        await self.launch_shards()
        queue: asyncio.PriorityQueue[EventItem] = self._AutoShardedClient__queue  # type: ignore[attr-defined]
        while not self.is_closed():
            item = await queue.get()
            if item.type == EventType.close:
                await self.close()
                if isinstance(item.error, discord.ConnectionClosed):
                    if item.error.code == 4014:
                        raise discord.PrivilegedIntentsRequired(item.shard.id if item.shard else None) from None
                    if item.error.code != 1000:
                        raise item.error
                return
            if item.type in (EventType.identify, EventType.resume):
                await item.shard.reidentify(item.error)  # type: ignore[union-attr]
            elif item.type == EventType.reconnect:
                await item.shard.reconnect()  # type: ignore[union-attr]
            elif item.type == EventType.terminate:
                if item.shard is not None and not isinstance(item.error, (discord.PrivilegedIntentsRequired,
                                                                          discord.ConnectionClosed)):
                    self._restart_later(item.shard, item.error, queue)
                    continue
                await self.close()
                raise item.error  # type: ignore[misc]
            elif item.type == EventType.clean_close:
                return

    def _restart_later(self, shard: Any, error: BaseException | None, queue: asyncio.PriorityQueue[EventItem]) -> None:
        loop = asyncio.get_running_loop()
        delay, failed_at = self._delays.get(shard.id, (self.reconnect_delay, 0.0))
        if loop.time() - failed_at > 60:
            delay = self.reconnect_delay
        self._delays[shard.id] = (min(60.0, delay * 2), loop.time())
        log.error("discord.py failed on a gateway event; it is dropped and the gateway reconnects in %.1fs on a new "
                  "session (shard %d)", delay, shard.id, exc_info=error)

        async def restart() -> None:
            try:
                await shard.ws.close(code=4000)  # the socket the failure left open, with its heartbeat thread
            except Exception as exc:
                log.debug("closing the failed gateway socket: %s", type(exc).__name__)
            await asyncio.sleep(delay)
            if not self.is_closed():
                queue.put_nowait(EventItem(EventType.identify, shard, ReconnectWebSocket(shard.id, resume=False)))

        task = asyncio.create_task(restart(), name=f"discord-shard-{shard.id}-restart")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def close(self) -> None:
        """Cancel pending shard restarts, then discord.py's close of every shard and the HTTP session."""
        for task in list(getattr(self, "_restarts", ())):
            task.cancel()
        await super().close()
